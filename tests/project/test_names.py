"""One name, one meaning (issue #24): no public class, function or constant is defined at the top of
two modules of the package, so `Plan`, `Limits` or `compare` never stands for two different things
depending on where it was imported from.

Read with `ast` (nothing imported). Private names (`_read`) belong to their module and are not
checked; nor are type variables (`T = TypeVar("T")`), which mean nothing beyond their module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "inpaint_cli"

SAME_MEANING_ALLOWED: dict[str, tuple[frozenset[str], str]] = {
    "BATCH_NORM_EPSILON": (
        frozenset({"inpaint_cli.models.pconv", "inpaint_cli.models.scratch"}),
        "each network's own hyperparameter (the same meaning, equal by coincidence of the papers): one "
        "shared constant would tie two architectures' definitions together",
    ),
    "LEAKY_SLOPE": (
        frozenset({"inpaint_cli.models.pconv", "inpaint_cli.models.scratch"}),
        "as BATCH_NORM_EPSILON: each network's own activation slope",
    ),
    "NATIVE_SIDE_FACTOR": (
        frozenset({"inpaint_cli.models.base", "inpaint_cli.models.lama"}),
        "one quantity: the families' default in `base`, LaMa's own larger value in `Lama.native_side`",
    ),
}
"""name -> (the modules that define it, why that is one meaning and not two)."""


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_variable(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and getattr(value.func, "id", None) in ("TypeVar", "ParamSpec")


def public_names(tree: ast.Module) -> set[str]:
    """Classes, functions and UPPER_CASE constants defined at the top of a module, without `_` names."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and not is_type_variable(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return {name for name in names if not name.startswith("_")}


def definitions(files: dict[str, str]) -> dict[str, set[str]]:
    """name -> the modules defining it, for names defined in more than one, of {module: source}."""
    where: dict[str, set[str]] = defaultdict(set)
    for module, source in files.items():
        for name in public_names(ast.parse(source)):
            where[name].add(module)
    return {name: modules for name, modules in where.items() if len(modules) > 1}


def package_sources() -> dict[str, str]:
    return {module_of(path): path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_public_name_is_defined_in_two_modules() -> None:
    twice = definitions(package_sources())
    new = {
        name: sorted(modules)
        for name, modules in twice.items()
        if name not in SAME_MEANING_ALLOWED or modules != SAME_MEANING_ALLOWED[name][0]
    }
    assert not new, f"one name, two definitions (rename one, or import the other): {new}"
    gone = sorted(set(SAME_MEANING_ALLOWED) - set(twice))
    assert not gone, f"defined once now, remove from SAME_MEANING_ALLOWED: {gone}"


def test_the_check_finds_a_name_defined_twice() -> None:
    defined_twice = "class Plan:\n    pass\n\n\ndef _helper():\n    pass\n\n\nLIMIT = 1\nT = TypeVar('T')\n"
    files = {
        "pkg.a": defined_twice,
        "pkg.b": defined_twice.replace("class Plan:", "def Plan():").replace("LIMIT =", "LIMIT: int ="),
        "pkg.c": "def compare():\n    pass\n\n\nclass Other:\n    def compare(self):\n        pass\n",
    }
    assert definitions(files) == {"Plan": {"pkg.a", "pkg.b"}, "LIMIT": {"pkg.a", "pkg.b"}}
    assert module_of(PACKAGE / "weights" / "__init__.py") == "inpaint_cli.weights"
