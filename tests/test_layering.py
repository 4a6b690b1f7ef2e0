"""Layering rules, enforced on the source: the math is pure and state never imports watcher."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the pure modules may import: values and arithmetic, nothing that does I/O,
# waits, or logs.
PURE_ALLOWED = {
    "__future__",
    "math",
    "decimal",
    "dataclasses",
    "collections",
    "collections.abc",
    "enum",
    "typing",
    "state.errors",
    "state.models",
}
PURE_MODULES = ["state/margin.py", "state/models.py", "state/errors.py"]


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", PURE_MODULES)
def test_margin_math_is_pure(module: str) -> None:
    used = imports(ROOT / module)
    assert used <= PURE_ALLOWED, f"{module} imports {sorted(used - PURE_ALLOWED)}"


def test_state_never_imports_watcher() -> None:
    for path in sorted((ROOT / "state").rglob("*.py")):
        offenders = {m for m in imports(path) if m == "watcher" or m.startswith("watcher.")}
        assert not offenders, f"{path.relative_to(ROOT)} imports {sorted(offenders)}"


def test_only_config_reads_the_environment() -> None:
    for path in sorted([*(ROOT / "state").rglob("*.py"), *(ROOT / "watcher").rglob("*.py")]):
        if path.name == "config.py":
            continue
        assert "os.environ" not in path.read_text(), f"{path.relative_to(ROOT)} reads os.environ"
