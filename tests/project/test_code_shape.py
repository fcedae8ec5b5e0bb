"""The package's code stays small and alive: no function over 80 lines or with more than 8 parameters,
and no function that nothing in the package refers to.

The checks read the source with `ast` (no import, nothing run). Offenders that predate a check and sit
in other people's areas are listed by name below, with the area that owns them, so that each owner can
fix and remove their entries; a listed entry that no longer offends fails the test too, so the lists
only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "inpaint_cli"
MAX_LINES = 80
MAX_PARAMETERS = 8

LONG_FUNCTIONS_ALLOWED: dict[str, str] = {}  # none when the check landed
"""`module:qualified.name` -> owner, for functions over `MAX_LINES` lines when the check landed."""
MANY_PARAMETERS_ALLOWED: dict[str, str] = {}
"""`module:qualified.name` -> owner, for functions over `MAX_PARAMETERS` parameters when the check landed."""
UNREFERENCED_ALLOWED: dict[str, str] = {}
"""`module:qualified.name` -> owner, for functions nothing referred to when the check landed."""

CALLED_FROM_OUTSIDE = {
    "forward": "torch.nn.Module.__call__ runs it",
    "extra_repr": "torch.nn.Module.__repr__ runs it",
    "format_help": "click calls it for --help",
    "get_params": "click calls it to list a command's parameters",
    "parse_args": "click calls it with the command line",
    "collect_usage_pieces": "click calls it for the usage line",
    "find_class": "pickle.Unpickler calls it for each global of a pickle",
    "persistent_load": "pickle.Unpickler calls it for each persistent id",
    "emit": "logging calls a handler's emit",
    "handle_starttag": "html.parser.HTMLParser.feed calls it for each tag",
    "handle_endtag": "html.parser.HTMLParser.feed calls it for each closing tag",
}
"""Method names that a library calls, so no code of ours names them; and why."""


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def functions(
    tree: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (`Class.method`, `outer.<locals>.inner`)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from functions(node, f"{name}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        elif not isinstance(node, ast.Lambda):
            yield from functions(node, prefix)


def every_function() -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for path in python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, node in functions(tree):
            yield f"{module_of(path)}:{name}", node


def line_count(node: ast.AST) -> int:
    """Lines of a function from its `def` (decorators excluded) to its last line, docstring included."""
    return node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Named parameters, without `self`/`cls`, `*args` and `**kwargs`."""
    arguments = node.args
    named = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    return len([a for a in named if a.arg not in ("self", "cls")])


def check(found: dict[str, str], allowed: dict[str, str], what: str) -> None:
    new = sorted(set(found) - set(allowed))
    gone = sorted(set(allowed) - set(found))
    assert not new, f"{what}: " + "; ".join(f"{name} ({found[name]})" for name in new)
    assert not gone, f"no longer {what}, remove from the allow-list: {gone}"


def test_no_function_is_longer_than_80_lines() -> None:
    found = {
        name: f"{line_count(node)} lines" for name, node in every_function() if line_count(node) > MAX_LINES
    }
    check(found, LONG_FUNCTIONS_ALLOWED, f"functions over {MAX_LINES} lines")


def test_no_function_has_more_than_8_parameters() -> None:
    found = {
        name: f"{parameter_count(node)} parameters"
        for name, node in every_function()
        if parameter_count(node) > MAX_PARAMETERS
    }
    check(found, MANY_PARAMETERS_ALLOWED, f"functions with more than {MAX_PARAMETERS} parameters")


# --- unreferenced functions ---------------------------------------------------------------------------


USERS = ["inpaint_cli", "tools", "benchmarks", "docs"]
"""Code whose use keeps a function alive: the package, its training tools, benchmarks and picture
scripts. Not the tests: a function only tests call is dead in the product."""


def referenced_names() -> dict[str, int]:
    """How often each name is used: loaded names, attributes, strings (`getattr`, the lazy exports of
    `inpaint_cli/__init__.py`), and `module:function` entry points of pyproject.toml."""
    counts: dict[str, int] = {}
    texts = [
        path.read_text(encoding="utf-8") for user in USERS for path in sorted((ROOT / user).rglob("*.py"))
    ]
    texts.append((ROOT / "pyproject.toml").read_text(encoding="utf-8"))  # console scripts
    for text in texts[:-1]:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
                used = node.id
            elif isinstance(node, ast.Attribute):
                used = node.attr
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                used = node.value
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    counts[alias.name] = counts.get(alias.name, 0) + 1
                continue
            else:
                continue
            counts[used] = counts.get(used, 0) + 1
    for entry in texts[-1].split('"'):
        if ":" in entry and entry.split(":")[-1].isidentifier():
            counts[entry.split(":")[-1]] = counts.get(entry.split(":")[-1], 0) + 1
    return counts


def is_registered(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function handed to a registry by a decorator call (`@app.command()`, `@app.callback()`)."""
    return any(isinstance(decorator, ast.Call) for decorator in node.decorator_list)


def test_every_function_is_referred_to_somewhere_in_the_package() -> None:
    """Name-based, like `vulture`: a function whose name no code of `USERS` uses."""
    used = referenced_names()
    found = {}
    for name, node in every_function():
        short = node.name
        if short.startswith("__") and short.endswith("__"):  # Python calls them
            continue
        if ".<locals>." in name or short in CALLED_FROM_OUTSIDE or is_registered(node):
            continue
        if used.get(short, 0) == 0:
            found[name] = f"line {node.lineno}"
    check(found, UNREFERENCED_ALLOWED, "functions nothing in the package refers to")


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    code = "def short(a, b):\n    return a\n\n\nclass K:\n    def method(self, a, b, c, d, e, f, g, h, i):\n"
    code += "        " + "\n        ".join(["pass"] * 85) + "\n"
    tree = ast.parse(code)
    named = dict(functions(tree))
    assert set(named) == {"short", "K.method"}
    assert parameter_count(named["K.method"]) == 9 and parameter_count(named["short"]) == 2
    assert line_count(named["K.method"]) == 86 and line_count(named["short"]) == 2
