#!/usr/bin/env python3
"""`make package`: build LlamaDesk for this platform and say where the result is.

  1. render the icons (packaging/make_icons.py),
  2. PyInstaller with packaging/llamadesk.spec -> dist/LlamaDesk/ (and dist/LlamaDesk.app on macOS),
  3. the platform's package:
       Linux    validate the .desktop entry, then dist/LlamaDesk-<version>-linux-<arch>.tar.gz
                (the bundle + install.sh + the .desktop entry; install.sh installs per user, no root);
       macOS    dist/LlamaDesk-<version>-macos-<arch>.dmg (packaging/macos/make_dmg.sh);
       Windows  dist/LlamaDesk-<version>-windows-setup.exe when Inno Setup's ISCC is on PATH;
  4. the smoke test: the bundled app's own `--self-test` on the test model (LLAMADESK_TEST_MODEL, set by
     `make package`, or --smoke-test MODEL), under Xvfb when xvfb-run exists, else offscreen.

Usage: python packaging/build.py [--clean] [--dist DIR] [--work DIR] [--smoke-test [MODEL] | --no-smoke-test]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "llamadesk.spec"
DESKTOP_ENTRY = HERE / "linux" / "llamadesk.desktop"
INSTALL_SCRIPT = HERE / "linux" / "install.sh"
SMOKE_TIMEOUT_S = 300


class BuildError(RuntimeError):
    """A build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class BuildPaths:
    dist: Path = ROOT / "dist"                     # the bundle and the packages
    work: Path = ROOT / "build" / "pyinstaller"    # PyInstaller's cache (reused between builds)

    @property
    def bundle(self) -> Path:
        return self.dist / "LlamaDesk"

    @property
    def executable(self) -> Path:
        return self.bundle / ("LlamaDesk.exe" if sys.platform == "win32" else "LlamaDesk")


def say(message: str) -> None:
    print(f"[llamadesk package] {message}", flush=True)


def run(cmd: list, *, env: dict | None = None, timeout: float | None = None) -> None:
    say("$ " + " ".join(str(part) for part in cmd))
    result = subprocess.run([str(part) for part in cmd], cwd=ROOT, env=env, timeout=timeout)
    if result.returncode != 0:
        raise BuildError(f"{Path(str(cmd[0])).name} failed with exit code {result.returncode}.")


def app_version() -> str:
    try:
        return metadata.version("llamadesk")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def platform_tag() -> str:
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower().replace("amd64", "x86_64")
    return f"{system}-{machine}"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


# --- steps -------------------------------------------------------------------------------------------

def render_icons() -> None:
    run([sys.executable, HERE / "make_icons.py"])


def run_pyinstaller(paths: BuildPaths, clean: bool) -> float:
    try:
        import PyInstaller  # noqa: F401
    except ImportError as error:
        raise BuildError("PyInstaller is not installed: run `make package`, which installs the "
                         "project's `package` extra.") from error
    started = time.monotonic()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", paths.dist, "--workpath", paths.work, SPEC]
    run(cmd + (["--clean"] if clean else []))
    elapsed = time.monotonic() - started
    check_bundle(paths)
    return elapsed


def check_bundle(paths: BuildPaths) -> None:
    """The pieces without which the bundle cannot chat are really inside it."""
    internal = paths.bundle / "_internal"
    wanted = [paths.executable, internal / "resources" / "catalog.json",
              internal / "resources" / "icons" / "llamadesk-256.png"]
    missing = [str(p.relative_to(paths.dist)) for p in wanted if not p.exists()]
    libraries = list((internal / "llama_cpp" / "lib").glob("*llama*"))
    if not libraries:
        missing.append("_internal/llama_cpp/lib/ (llama.cpp's libraries)")
    if missing:
        raise BuildError(f"The bundle lacks: {', '.join(missing)}.")


def strip_interpreter_debug_info(paths: BuildPaths) -> int:
    """Linux: drop the debug sections of the Python interpreter's own libraries; returns bytes saved.

    A Python built from source (pyenv) ships libpython and lib-dynload with debug info: about 30 MiB
    nobody's crash report uses. `strip --strip-debug` keeps the symbols; other libraries are untouched.
    """
    strip = shutil.which("strip")
    internal = paths.bundle / "_internal"
    targets = [*internal.glob("libpython3*.so*"), *internal.glob("python3*/lib-dynload/*.so")]
    targets = [p for p in targets if p.is_file() and not p.is_symlink()]
    if strip is None or not targets:
        return 0
    before = sum(p.stat().st_size for p in targets)
    subprocess.run([strip, "--strip-debug", *map(str, targets)], check=False, capture_output=True)
    return before - sum(p.stat().st_size for p in targets)


def ensure_desktop_file_validate() -> str | None:
    """desktop-file-validate, installed from Debian's desktop-file-utils when we are root there."""
    tool = shutil.which("desktop-file-validate")
    if tool or os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        return tool
    say("installing desktop-file-utils (for desktop-file-validate)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "desktop-file-utils"],
                   env=env, check=False)
    return shutil.which("desktop-file-validate")


def validate_desktop_entry() -> None:
    tool = ensure_desktop_file_validate()
    if tool is None:
        say("desktop-file-validate is not installed (Debian: desktop-file-utils): the .desktop entry is "
            "not validated")
        return
    result = subprocess.run([tool, str(DESKTOP_ENTRY)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{DESKTOP_ENTRY.name} is not valid:\n{result.stdout}{result.stderr}")
    say(f"{DESKTOP_ENTRY.name}: valid")


def linux_archive(paths: BuildPaths, version: str) -> Path:
    """dist/LlamaDesk-<version>-linux-<arch>.tar.gz: the bundle, install.sh and the menu entry."""
    top = f"LlamaDesk-{version}-{platform_tag()}"
    archive = paths.dist / f"{top}.tar.gz"
    partial = archive.with_suffix(".part")
    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
        tar.add(paths.bundle, arcname=f"{top}/LlamaDesk")
        tar.add(INSTALL_SCRIPT, arcname=f"{top}/install.sh")
        tar.add(DESKTOP_ENTRY, arcname=f"{top}/llamadesk.desktop")
    partial.replace(archive)
    return archive


def macos_dmg(paths: BuildPaths, version: str) -> Path:
    dmg = paths.dist / f"LlamaDesk-{version}-{platform_tag()}.dmg"
    run(["bash", HERE / "macos" / "make_dmg.sh", paths.dist / "LlamaDesk.app", dmg])
    return dmg


def windows_installer(paths: BuildPaths, version: str) -> Path | None:
    iscc = shutil.which("iscc") or shutil.which("ISCC")
    if iscc is None:
        say("Inno Setup (ISCC) is not on PATH: the installer is not built; dist/LlamaDesk/ is the bundle")
        return None
    run([iscc, f"/DAppVersion={version}", f"/DBundleDir={paths.bundle}", f"/DOutputDir={paths.dist}",
         HERE / "windows" / "llamadesk.iss"])
    return paths.dist / f"LlamaDesk-{version}-windows-setup.exe"


def package_for_platform(paths: BuildPaths, version: str) -> list[Path]:
    if sys.platform.startswith("linux"):
        validate_desktop_entry()
        saved = strip_interpreter_debug_info(paths)
        if saved:
            say(f"stripped the interpreter's debug info: {mib(saved)} less")
        return [linux_archive(paths, version)]
    if sys.platform == "darwin":
        return [paths.dist / "LlamaDesk.app", macos_dmg(paths, version)]
    if sys.platform == "win32":
        installer = windows_installer(paths, version)
        return [installer] if installer else []
    return []


def smoke_test(paths: BuildPaths, model: Path) -> dict:
    """The bundled app's --self-test: open the window, load `model`, stream one answer."""
    if not model.is_file():
        raise BuildError(f"The smoke test needs a model; {model} does not exist (make test fetches one).")
    result_path = paths.work / "self-test-bundle.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.unlink(missing_ok=True)
    cmd: list = [paths.executable, "--self-test", model, "--self-test-result", result_path]
    # Its own LlamaDesk home (settings, logs) under the work folder: the user's recent models stay as
    # they are, and the smoke test's log is there to read when it fails.
    home = paths.work / "smoke-home"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, LLAMADESK_HOME=str(home))
    if sys.platform.startswith("linux"):
        if shutil.which("xvfb-run"):
            cmd = ["xvfb-run", "-a", *cmd]
            env["QT_QPA_PLATFORM"] = "xcb"
        else:
            env["QT_QPA_PLATFORM"] = "offscreen"
    try:
        run(cmd, env=env, timeout=SMOKE_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise BuildError(f"The bundled self-test did not finish within {SMOKE_TIMEOUT_S} s.") from error
    except BuildError as error:
        detail = result_path.read_text(encoding="utf-8") if result_path.exists() else "(no result written)"
        raise BuildError(f"The bundled self-test failed: {error}\n{detail}\nIts log: {home / 'logs'}") from error
    return json.loads(result_path.read_text(encoding="utf-8"))


def smoke_test_model(arguments: argparse.Namespace) -> Path | None:
    """The model for the smoke test, or None when it is not wanted (or no model is known)."""
    if arguments.no_smoke_test:
        return None
    if arguments.smoke_test:
        return Path(arguments.smoke_test)
    value = os.environ.get("LLAMADESK_TEST_MODEL")
    if value:
        return Path(value)
    if arguments.smoke_test is not None:
        raise BuildError("--smoke-test needs a model path or LLAMADESK_TEST_MODEL.")
    say("no smoke test: no model given (--smoke-test MODEL) and LLAMADESK_TEST_MODEL is not set")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build LlamaDesk for this platform.")
    parser.add_argument("--clean", action="store_true", help="rebuild PyInstaller's caches from scratch")
    parser.add_argument("--dist", type=Path, default=BuildPaths.dist, help="output folder (default dist/)")
    parser.add_argument("--work", type=Path, default=BuildPaths.work,
                        help="PyInstaller's work folder (default build/pyinstaller)")
    parser.add_argument("--smoke-test", nargs="?", const="", metavar="MODEL",
                        help="run the bundled app's --self-test on MODEL (default: $LLAMADESK_TEST_MODEL, "
                             "which `make package` sets: then the smoke test runs without this option)")
    parser.add_argument("--no-smoke-test", action="store_true", help="skip the smoke test")
    arguments = parser.parse_args(argv)
    version = app_version()
    paths = BuildPaths(arguments.dist.resolve(), arguments.work.resolve())
    try:
        render_icons()
        seconds = run_pyinstaller(paths, arguments.clean)
        say(f"PyInstaller took {seconds:.0f} s")
        outputs = package_for_platform(paths, version)
        say(f"bundle: {paths.bundle} ({mib(folder_bytes(paths.bundle))})")
        for output in outputs:
            size = folder_bytes(output) if output.is_dir() else output.stat().st_size
            say(f"output: {output} ({mib(size)})")
        model = smoke_test_model(arguments)
        if model is not None:
            result = smoke_test(paths, model)
            say(f"smoke test passed: {result['tokens']} tokens at {result['tokens_per_second']} tok/s, "
                f"window shown after {result['window_shown_seconds']} s")
    except BuildError as error:
        print(f"[llamadesk package] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
