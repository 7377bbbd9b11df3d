"""The installed app: what the bundle carries, the Linux menu entry and per-user install, the icons.

The PyInstaller build itself (about 1 minute here, plus 1 minute for the tar.gz and the smoke test) runs
in test_the_bundle_passes_its_self_test when PyInstaller is installed (the project's `package` extra).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
DESKTOP_ENTRY = PACKAGING / "linux" / "llamadesk.desktop"
INSTALL_SCRIPT = PACKAGING / "linux" / "install.sh"


def load_packaging_module(name: str) -> types.ModuleType:
    # packaging/ is not a Python package (the name would shadow PyPI's `packaging`): load by path.
    spec = importlib.util.spec_from_file_location(f"llamadesk_packaging_{name}", PACKAGING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def contents():
    return load_packaging_module("bundle_contents")


# --- what the bundle carries -------------------------------------------------------------------------------

def test_every_llama_cpp_library_travels_once(contents):
    lib_dir = contents.llama_cpp_lib_dir()
    chosen = {Path(source).name for source, dest in contents.llama_cpp_libraries()}
    assert {dest for _source, dest in contents.llama_cpp_libraries()} == {"llama_cpp/lib"}
    assert any(name.startswith(("libllama.", "llama.")) for name in chosen)
    for library in lib_dir.iterdir():
        if contents.is_library_file(library):
            # Left out only when it is the fully versioned copy of a library that does travel.
            assert library.name in chosen or contents.redundant_copy(library), library.name
    if sys.platform.startswith("linux"):
        # llama_cpp opens libllama.so; hardware.py opens libggml.so.0 (the soname libllama links to).
        assert {"libllama.so", "libggml.so.0", "libggml-base.so.0", "libggml-cpu.so.0"} <= chosen


def test_library_selection_on_each_platform_layout(contents, tmp_path):
    names = ["libggml.so", "libggml.so.0", "libggml.so.0.25.3", "libllama.so", "libllama.so.0",
             "libllama.so.0.5.0", "libggml-metal.0.dylib", "ggml-metal.metal", "default.metallib",
             "ggml-cuda.dll", "llama.dll", "llama.lib", "README.md", "libfoo.so.1.2"]
    for name in names:
        (tmp_path / name).write_bytes(b"\0")
    chosen = sorted(Path(source).name for source, _dest in contents.llama_cpp_libraries(tmp_path))
    assert chosen == ["default.metallib", "ggml-cuda.dll", "ggml-metal.metal", "libfoo.so.1.2",
                      "libggml-metal.0.dylib", "libggml.so", "libggml.so.0", "libllama.so",
                      "libllama.so.0", "llama.dll"]


def test_a_build_without_llama_library_is_refused(contents, tmp_path):
    (tmp_path / "libggml.so.0").write_bytes(b"\0")
    with pytest.raises(contents.BundleContentsError, match="No llama library"):
        contents.llama_cpp_libraries(tmp_path)


def test_only_the_qt_modules_the_app_imports_are_kept(contents):
    excluded = set(contents.excluded_modules())
    used = contents.qt_modules_used()
    assert {"QtCore", "QtGui", "QtWidgets"} <= used
    assert not {f"PySide6.{name}" for name in used} & excluded
    installed = contents.qt_modules_installed()
    for heavy in ("QtWebEngineCore", "Qt3DCore", "QtMultimedia", "QtQuick", "QtQml", "QtCharts"):
        if heavy in installed and heavy not in used:
            assert f"PySide6.{heavy}" in excluded


@pytest.mark.parametrize(("path", "wanted"), [
    ("PySide6/Qt/lib/libQt6Core.so.6", True),
    ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
    ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
    ("PySide6/Qt/plugins/platforms/libqwayland.so", True),
    ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
    ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
    ("llama_cpp/lib/libllama.so", True),
    ("PySide6/Qt/lib/libQt6Quick.so.6", False),
    ("libQt6QmlModels.so.6", False),
    ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", False),
    ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
    ("PySide6/Qt/plugins/platforms/libqeglfs.so", False),
    ("PySide6\\Qt6Network.dll", False),
])
def test_unneeded_qt_plugins_and_libraries_are_dropped(contents, path, wanted):
    assert contents.wanted_binary(path) is wanted


class SpecRecorder:
    """Stands in for PyInstaller's spec globals and records what the spec asks for."""

    def __init__(self) -> None:
        self.calls: dict[str, dict] = {}

    def target(self, name: str):
        def record(*args, **kwargs):
            self.calls[name] = {"args": args, **kwargs}
            return types.SimpleNamespace(pure=[], scripts=[], binaries=list(kwargs.get("binaries", [])),
                                         datas=list(kwargs.get("datas", [])))
        return record


def run_spec(monkeypatch) -> SpecRecorder:
    recorder = SpecRecorder()
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda package: [f"{package}.stub"]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec_globals = {"SPECPATH": str(PACKAGING), "__file__": str(PACKAGING / "llamadesk.spec")}
    for name in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"):
        spec_globals[name] = recorder.target(name)
    exec(compile((PACKAGING / "llamadesk.spec").read_text(), "llamadesk.spec", "exec"), spec_globals)
    sys.modules.pop("bundle_contents", None)
    return recorder


def test_the_spec_carries_llama_cpp_resources_and_the_entry_point(qapp, monkeypatch, contents):
    load_packaging_module("make_icons").make_icons()  # as the build does first (nothing when up to date)
    spec = run_spec(monkeypatch)
    analysis = spec.calls["Analysis"]
    assert analysis["args"][0] == [str(PACKAGING / "llamadesk_main.py")]
    assert analysis["binaries"] == contents.llama_cpp_libraries()
    assert (str(ROOT / "resources"), "resources") in analysis["datas"]
    assert "PySide6.QtWebEngineCore" in analysis["excludes"] or "QtWebEngineCore" not in \
        contents.qt_modules_installed()
    assert {"core.stub", "desktop.stub"} <= set(analysis["hiddenimports"])
    executable = spec.calls["EXE"]
    assert executable["name"] == "LlamaDesk" and executable["console"] is False
    assert spec.calls["COLLECT"]["name"] == "LlamaDesk"   # one-folder bundle: dist/LlamaDesk/
    assert Path(executable["icon"]).is_file()


def test_the_entry_point_runs_helper_modules_like_python_does(tmp_path):
    """`<bundle> -m core.fit.dry_run` must work: core starts helpers through sys.executable."""
    entry = load_packaging_module("llamadesk_main")
    helper = tmp_path / "llamadesk_probe_helper.py"
    helper.write_text("import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(__name__ + ' ' + sys.argv[0])\n")
    out = tmp_path / "out.txt"
    sys.path.insert(0, str(tmp_path))
    try:
        entry.run_module_like_python(["-m", "llamadesk_probe_helper", str(out)])
    finally:
        sys.path.remove(str(tmp_path))
    assert out.read_text() == f"__main__ {helper}"


# --- icons -----------------------------------------------------------------------------------------------

def test_icons_render_into_every_format(qapp, tmp_path):  # qapp: a QApplication, not a bare QGuiApplication
    icons = load_packaging_module("make_icons")
    written = icons.make_icons(tmp_path, force=True)
    assert {p.name for p in written} >= {"llamadesk-16.png", "llamadesk-512.png", "llamadesk.ico",
                                          "llamadesk.icns"}
    png = (tmp_path / "llamadesk-512.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (512, 512)
    ico = (tmp_path / "llamadesk.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind, count) == (0, 1, len(icons.ICO_SIZES))
    icns = (tmp_path / "llamadesk.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)


# --- Linux: menu entry and per-user install ---------------------------------------------------------------

def validate(entry: Path) -> None:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("desktop-file-validate is not installed (Debian: desktop-file-utils)")
    result = subprocess.run([tool, str(entry)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_desktop_entry_is_valid():
    validate(DESKTOP_ENTRY)


def fake_package(folder: Path) -> Path:
    """The unpacked tar.gz's layout, with a stand-in for the bundled executable."""
    bundle = folder / "LlamaDesk"
    icons = bundle / "_internal" / "resources" / "icons"
    icons.mkdir(parents=True)
    for source in (ROOT / "resources" / "icons").glob("llamadesk*"):
        shutil.copy(source, icons / source.name)
    executable = bundle / "LlamaDesk"
    executable.write_text("#!/bin/sh\necho \"LlamaDesk started with: $*\"\n")
    executable.chmod(0o755)
    shutil.copy(INSTALL_SCRIPT, folder / "install.sh")
    shutil.copy(DESKTOP_ENTRY, folder / "llamadesk.desktop")
    return folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux installer")
@pytest.mark.parametrize("home_name", ["home", "home with space"])
def test_install_sh_installs_for_the_user_and_uninstalls(tmp_path, home_name):
    package = fake_package(tmp_path / "LlamaDesk-0.1.0-linux-x86_64")
    home = tmp_path / home_name
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    done = subprocess.run(["bash", str(package / "install.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    binary = home / ".local" / "opt" / "llamadesk" / "LlamaDesk" / "LlamaDesk"
    launcher = home / ".local" / "bin" / "llamadesk"
    entry = home / ".local" / "share" / "applications" / "llamadesk.desktop"
    assert binary.is_file() and launcher.is_symlink() and launcher.resolve() == binary.resolve()
    assert (home / ".local/share/icons/hicolor/256x256/apps/llamadesk.png").is_file()
    assert (home / ".local/share/icons/hicolor/scalable/apps/llamadesk.svg").is_file()
    lines = entry.read_text().splitlines()
    expected_exec = f'"{binary}"' if " " in str(binary) else str(binary)
    assert f"Exec={expected_exec} %f" in lines and f"TryExec={binary}" in lines
    validate(entry)
    started = subprocess.run([str(launcher), "model.gguf"], capture_output=True, text=True)
    assert started.stdout.strip() == "LlamaDesk started with: model.gguf"

    again = subprocess.run(["bash", str(package / "install.sh")], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # updating over an installed copy

    uninstall = home / ".local" / "opt" / "llamadesk" / "uninstall.sh"
    removed = subprocess.run([str(uninstall)], env=env, capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr
    assert not binary.exists() and not launcher.exists() and not launcher.is_symlink() and not entry.exists()
    assert not (home / ".local/share/icons/hicolor/256x256/apps/llamadesk.png").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux installer")
def test_install_sh_refuses_a_folder_without_a_bundle(tmp_path):
    shutil.copy(INSTALL_SCRIPT, tmp_path / "install.sh")
    done = subprocess.run(["bash", str(tmp_path / "install.sh"), "--home", str(tmp_path / "home")],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "no LlamaDesk bundle" in done.stderr
    assert not (tmp_path / "home" / ".local").exists()


# --- the real bundle ----------------------------------------------------------------------------------------

@pytest.mark.model
def test_the_bundle_passes_its_self_test(smollm2, tmp_path):
    """`make package` end to end into a temporary dist/: PyInstaller, tar.gz, the bundled --self-test."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (the project's `package` extra): the bundle is not built")
    dist = tmp_path / "dist"
    work = ROOT / "build" / "pyinstaller-test"   # PyInstaller's cache, kept between runs
    done = subprocess.run([sys.executable, str(PACKAGING / "build.py"), "--dist", str(dist), "--work", str(work),
                           "--smoke-test", str(smollm2)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads((work / "self-test-bundle.json").read_text())
    assert result["ok"] is True and result["bundled"] is True and result["answer"].strip()
    assert list(dist.glob("LlamaDesk-*-linux-*.tar.gz")) or not sys.platform.startswith("linux")
    lib = dist / "LlamaDesk" / "_internal" / "llama_cpp" / "lib"
    assert any(lib.glob("*llama*"))
