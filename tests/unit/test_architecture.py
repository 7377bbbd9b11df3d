"""The house rules that keep the brain testable headless and its rooms in order (ARCHITECTURE §1):
nothing under core/ imports Qt, no module imports itself back through others, and each room of core/
depends only on the rooms below it."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QT_PACKAGES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy")

# Which rooms each room of core/ may import. Anything not listed is a dependency pointing the wrong way.
ALLOWED_ROOM_IMPORTS = {
    "core.gguf": set(),
    "core.platform": set(),
    "core.settings": {"core.gguf", "core.platform"},
    "core.machine": {"core.gguf", "core.platform"},
    "core.chat": {"core.platform", "core.settings"},
    "core.engine": {"core.gguf", "core.machine", "core.platform", "core.settings"},
    "core.fit": {"core.engine", "core.gguf", "core.machine", "core.platform", "core.settings"},
    "core.models": {"core.fit", "core.gguf", "core.machine", "core.platform", "core.settings"},
    "core.monitor": {"core.engine", "core.machine", "core.platform"},
    "core.server": {"core.chat", "core.engine", "core.fit", "core.gguf", "core.machine", "core.models",
                    "core.platform", "core.settings"},
    "core.cli": {"core.chat", "core.engine", "core.fit", "core.gguf", "core.machine", "core.models",
                 "core.monitor", "core.platform", "core.server", "core.settings"},
}


def imported_top_level_names(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def import_graph(root: Path, package: str = "core") -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at any depth of the file (a deferred import counts)."""
    modules = {module_name(path, root): path for path in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            graph[name].update(t for t in targets if t in modules and t != name and t != package)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. Depth-first search with colours."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(graph):
        if colour[start] == WHITE and (found := visit(start)):
            return found
    return None


def room_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_under_core_imports_qt():
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_names(path) & set(QT_PACKAGES))
        for path in (ROOT / "core").rglob("*.py")
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert offenders == {}, f"core/ must stay Qt-free; these modules import Qt: {offenders}"


def test_importing_every_core_module_loads_no_qt():
    modules = sorted(
        module_name(path, ROOT)
        for path in (ROOT / "core").rglob("*.py")
        if path.name != "__main__.py"  # running a program is not importing a module
    )
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {QT_PACKAGES!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing core pulled in Qt: {result.stdout}"


def test_the_rule_catches_a_qt_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from PySide6.QtCore import QObject\nimport os\n")
    assert "PySide6" in imported_top_level_names(sample)


def test_core_has_no_import_cycle():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "core/ has an import cycle: " + " -> ".join(cycle or [])


def test_every_room_of_core_is_declared_and_imports_only_the_rooms_below_it():
    rooms = {room_of(name) for name in import_graph(ROOT) if name != "core"}
    assert rooms <= set(ALLOWED_ROOM_IMPORTS), f"undeclared rooms in core/: {rooms - set(ALLOWED_ROOM_IMPORTS)}"
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph(ROOT).items()
        for target in targets
        if room_of(target) != room_of(module) and room_of(target) not in ALLOWED_ROOM_IMPORTS.get(room_of(module), set())
    )
    assert wrong == [], "imports pointing the wrong way between rooms:\n" + "\n".join(wrong)


def test_the_cycle_rule_catches_a_deferred_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import thing\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])
    (package / "b.py").write_text("")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_planning_and_the_engine_client_load_no_llama_cpp():
    """llama.cpp lives in the engine's own process (it aborts on internal errors): the window and the CLI plan,
    fit-check and talk to the engine without loading it."""
    modules = ["core.models.fit_check", "core.models.catalog", "core.fit.load_preparation", "core.fit.dry_run",
               "core.engine.client", "core.chat.store", "core.cli.fit_cmd"]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'llama_cpp'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"llama.cpp loaded in the app's process by: {result.stdout}"
