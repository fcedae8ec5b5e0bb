"""The `run` command's options: each reaches the library with its value, is validated before anything
runs, and is documented; the package's imports go one way; `--help` stays instant."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inpaint_cli"


# --- imports go one way ---------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere: at module level, inside functions, under
    TYPE_CHECKING. `from pkg import name` counts as importing `pkg.name` when that is a module."""
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != this}


def import_graph(root: Path = ROOT, package: str = "inpaint_cli") -> dict[str, set[str]]:
    paths = sorted((root / package).rglob("*.py"))
    known = {module_name(path, root) for path in paths}
    return {module_name(path, root): imported_modules(path, root, known) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first = last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def late():\n    from .sub import c\n")
    (package / "sub" / "c.py").write_text("import os\n\ndef later():\n    from ..a import name\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    (package / "sub" / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_no_import_cycles_between_the_package_modules() -> None:
    graph = import_graph()
    assert "inpaint_cli.cli_run" in graph["inpaint_cli.cli"]  # the walk sees real edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_library_modules_never_import_the_command_line() -> None:
    graph = import_graph()
    command_line = {
        name for name in graph if name.rpartition(".")[2].startswith("cli") or name.endswith("console")
    }
    for name, targets in graph.items():
        if name not in command_line and name != "inpaint_cli.__main__":
            assert not targets & command_line, f"{name} imports {targets & command_line}"
