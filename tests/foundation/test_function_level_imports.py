"""Imports of finsent's own modules sit at the top of a module, where the import graph (and
import-linter) sees them at a glance. The one exception: a module that pulls in torch or
transformers may be imported inside the function that needs it, so commands and roles that never
classify start without loading them; such a line says so with a ``# heavy:`` comment."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("monitor", "models", "connectors", "alerts")
HEAVY = ("torch", "transformers", "onnxruntime")


def _function_level_imports() -> list[tuple[Path, int, str]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if (
                        isinstance(node, ast.ImportFrom)
                        and node.level == 0
                        and node.module
                        and node.module.split(".")[0] in PACKAGES
                    ):
                        found.append((path, node.lineno, node.module))
    return found


def test_every_function_level_import_of_our_modules_says_it_is_heavy() -> None:
    unexplained = []
    for path, line, module in _function_level_imports():
        text = path.read_text(encoding="utf-8").splitlines()[line - 1]
        if "# heavy:" not in text:
            unexplained.append(f"{path.relative_to(ROOT)}:{line} {module}")
    assert unexplained == [], "import at the top of the module, or say why not (# heavy: ...):\n" + "\n".join(
        unexplained
    )


def _top_level_imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    out: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from models import engine`
    return out


def _loads_heavy(module: str, seen: set[str] | None = None) -> bool:
    """Whether importing ``module`` imports torch, transformers or onnxruntime (through the
    top-level imports of our modules it imports)."""
    seen = set() if seen is None else seen
    if module in seen:
        return False
    seen.add(module)
    for imported in _top_level_imports(module):
        root = imported.split(".")[0]
        if root in HEAVY:
            return True
        exists = (ROOT / (imported.replace(".", "/") + ".py")).exists() or (
            ROOT / imported.replace(".", "/") / "__init__.py"
        ).exists()
        if root in PACKAGES and exists and _loads_heavy(imported, seen):
            return True
    return False


def test_what_is_imported_late_really_is_heavy() -> None:
    """The exception is not used for light modules. ``from models import InferenceEngine`` names a
    public name of the package that loads ``models.engine`` on first use."""
    light = []
    for path, line, module in _function_level_imports():
        text = path.read_text(encoding="utf-8").splitlines()[line - 1]
        target = "models.engine" if module == "models" and "InferenceEngine" in text else module
        if not _loads_heavy(target):
            light.append(f"{path.relative_to(ROOT)}:{line} {module}")
    assert light == [], "light modules imported inside functions: move them to the top\n" + "\n".join(light)


def test_the_heaviness_check_follows_imports() -> None:
    assert _loads_heavy("models.engine") and _loads_heavy("models.training")
    assert not _loads_heavy("models.registry") and not _loads_heavy("monitor.core.records")
