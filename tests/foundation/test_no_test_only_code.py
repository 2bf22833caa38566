"""Every function and class in the packages is used by the packages themselves (or named by the
deploy files): code that only tests call belongs in tests/, code nobody calls goes.

A name counts as used when it appears anywhere in the packages' source besides its definition
(calls, references, strings such as entry points). Decorated functions (routes, validators,
fixtures) are registered by their decorator and are not checked.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("monitor", "models", "connectors", "alerts")
FRAMEWORK_CALLBACKS = {
    "handle_starttag": "html.parser.HTMLParser calls it",
    "handle_endtag": "html.parser.HTMLParser calls it",
    "handle_data": "html.parser.HTMLParser calls it",
    "on_partitions_revoked": "kafka-python's ConsumerRebalanceListener calls it",
    "on_partitions_assigned": "kafka-python's ConsumerRebalanceListener calls it",
}
WORD = re.compile(r"\w+")


def unused_definitions(sources: list[Path], base: Path, elsewhere: str = "") -> list[str]:
    """``path:line name`` of every undecorated function or class in ``sources`` whose name appears
    nowhere else in ``sources`` nor in ``elsewhere``."""
    texts = [p.read_text(encoding="utf-8") for p in sources]
    words = Counter(w for text in texts for w in WORD.findall(text))
    others = set(WORD.findall(elsewhere))
    unused = []
    for path, text in zip(sources, texts):
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("__") or node.decorator_list or node.name in FRAMEWORK_CALLBACKS:
                continue
            if words[node.name] <= 1 and node.name not in others:
                unused.append(f"{path.relative_to(base)}:{node.lineno} {node.name}")
    return unused


def test_no_function_or_class_is_used_only_by_tests_or_by_nobody() -> None:
    sources = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
    deploy = [ROOT / "pyproject.toml"] + [
        p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix in {".py", ".sh", ".yml", ".toml"}
    ]
    elsewhere = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in deploy)
    unused = unused_definitions(sources, ROOT, elsewhere)
    assert unused == [], "used only by tests, or by nothing (move it to tests/ or delete it):\n" + "\n".join(unused)


def test_the_check_reports_what_nothing_else_names(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def used():\n    return 1\n\n\ndef orphan():\n    return used()\n")
    (tmp_path / "b.py").write_text("class Listed:\n    pass\n\n\n@decorator\ndef route():\n    pass\n")
    found = unused_definitions([tmp_path / "a.py", tmp_path / "b.py"], tmp_path, elsewhere="Listed in a deploy file")
    assert found == ["a.py:5 orphan"]
