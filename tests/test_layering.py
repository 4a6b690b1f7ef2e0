"""The layers of liqwatch, stated once and enforced on the source (every import, also lazy ones).

From the bottom up; a layer may import itself and the layers it names in
``may_import``, nothing else of the project:

- ``core``    ``state/*.py``: values, margin math, keys, inputs, plans,
              decisions, events. Pure: no I/O, no clock, no network.
- ``store``   ``state/store/``: the Redis store and its Lua scripts.
- ``clock``   ``watcher/clock.py``: the one reader of the wall clock.
- ``feeds``   ``watcher/feeds/``: venue parsers, the mark book, the
              connection task.
- ``daemon``  ``watcher/daemon/``: config, logs, engine, input consumer, app.
- ``demo``    ``watcher/demo/``: the demo (with a notifier), venue sims, throwaway servers.
- ``notify``  ``watcher/notify/``: the notifier, a process of its own that reads
              the events stream and delivers to webhooks, Slack, PagerDuty.
- ``cli``     ``watcher/cli/``: every command; the only importer of the demo.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Layer:
    name: str
    # A folder (everything under it) or one file; the longest match wins.
    path: str
    may_import: frozenset[str]


LAYERS = (
    Layer("core", "state", frozenset()),
    Layer("store", "state/store", frozenset({"core"})),
    Layer("clock", "watcher/clock.py", frozenset()),
    Layer("feeds", "watcher/feeds", frozenset({"core", "clock"})),
    Layer("daemon", "watcher/daemon", frozenset({"core", "store", "clock", "feeds"})),
    Layer("notify", "watcher/notify", frozenset({"core", "store", "clock", "daemon"})),
    Layer(
        "demo", "watcher/demo", frozenset({"core", "store", "clock", "feeds", "daemon", "notify"})
    ),
    Layer(
        "cli",
        "watcher/cli",
        frozenset({"core", "store", "clock", "feeds", "daemon", "demo", "notify"}),
    ),
)
# What the pure core may import from outside the project: values, arithmetic,
# text and JSON; nothing that does I/O, waits, reads a clock or logs.
CORE_ALLOWED = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "decimal",
    "enum",
    "json",
    "math",
    "orjson",
    "re",
    "functools",
    "hashlib",
    "types",
    "typing",
}
# The margin math is stricter still: it takes values and returns values.
MARGIN_MODULES = ("state/margin.py", "state/models.py", "state/errors.py")
MARGIN_ALLOWED = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "decimal",
    "enum",
    "functools",
    "math",
}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module.split(".")[0] in ("state", "watcher"):
                # ``from state import margin`` imports the module state.margin.
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer_of_file(path: Path, root: Path = ROOT) -> Layer:
    rel = path.relative_to(root).as_posix()
    matches = [layer for layer in LAYERS if rel == layer.path or rel.startswith(layer.path + "/")]
    assert matches, f"{rel} belongs to no layer: add it to LAYERS"
    return max(matches, key=lambda layer: len(layer.path))


def layer_of_module(module: str) -> Layer | None:
    """The layer a project module belongs to; None for anything outside the project."""
    if module.split(".")[0] not in ("state", "watcher"):
        return None
    parts = module.split(".")
    candidates = [ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")]
    for path in candidates:
        if path.exists():
            return layer_of_file(path)
    # A name imported from a package (``from state import margin``'s "state"
    # entry, or a function imported by name): judged by its module instead.
    return None


def package_files() -> list[Path]:
    """Every module of the two packages, but their docstring-only top ``__init__.py``."""
    tops = {ROOT / "state" / "__init__.py", ROOT / "watcher" / "__init__.py"}
    files = [*(ROOT / "state").rglob("*.py"), *(ROOT / "watcher").rglob("*.py")]
    return sorted(p for p in files if p not in tops)


def layer_violations(path: Path, root: Path = ROOT) -> list[str]:
    """The imports of ``path`` (a file of the tree at ``root``) that its layer does not allow."""
    layer = layer_of_file(path, root)
    out = []
    for module in sorted(imports(path)):
        target = layer_of_module(module)
        if target is None or target.name == layer.name or target.name in layer.may_import:
            continue
        out.append(f"{path.relative_to(root)} ({layer.name}) imports {module} ({target.name})")
    return out


def test_every_file_has_a_layer() -> None:
    for path in package_files():
        layer_of_file(path)
    for top in ("state", "watcher"):
        init = ROOT / top / "__init__.py"
        assert imports(init) <= {"__future__"}, f"{top}/__init__.py must only describe the package"


@pytest.mark.parametrize("layer", LAYERS, ids=[layer.name for layer in LAYERS])
def test_each_layer_imports_only_what_it_may(layer: Layer) -> None:
    files = [p for p in package_files() if layer_of_file(p) is layer]
    assert files, f"layer {layer.name} holds no file"
    problems = [v for p in files for v in layer_violations(p)]
    assert not problems, "\n".join(problems)


def test_the_pure_core_does_no_io() -> None:
    for path in package_files():
        if layer_of_file(path).name != "core":
            continue
        outside = {m for m in imports(path) if m.split(".")[0] not in ("state", "watcher")}
        assert outside <= CORE_ALLOWED, f"{path.relative_to(ROOT)} imports {outside - CORE_ALLOWED}"


@pytest.mark.parametrize("module", MARGIN_MODULES)
def test_margin_math_takes_values_and_returns_values(module: str) -> None:
    outside = {m for m in imports(ROOT / module) if m.split(".")[0] != "state"}
    assert outside <= MARGIN_ALLOWED, f"{module} imports {sorted(outside - MARGIN_ALLOWED)}"


def test_nothing_but_the_cli_imports_the_demo() -> None:
    for path in package_files():
        if layer_of_file(path).name in ("cli", "demo"):
            continue
        demo = {m for m in imports(path) if m == "watcher.demo" or m.startswith("watcher.demo.")}
        assert not demo, f"{path.relative_to(ROOT)} imports {sorted(demo)}"


def test_only_config_reads_the_environment() -> None:
    for path in package_files():
        if path == ROOT / "watcher" / "daemon" / "config.py":
            continue
        assert "os.environ" not in path.read_text(), f"{path.relative_to(ROOT)} reads os.environ"


@pytest.mark.parametrize(
    ("where", "line", "expected"),
    [
        (
            "state/store/probe.py",
            "from watcher.daemon.engine import Engine",
            "(store) imports watcher.daemon.engine (daemon)",
        ),
        ("state/probe.py", "from state.store import Store", "(core) imports state.store (store)"),
        (
            "watcher/daemon/probe.py",
            "import watcher.demo.runner",
            "(daemon) imports watcher.demo.runner (demo)",
        ),
        (
            "watcher/feeds/probe.py",
            "from watcher.daemon import config",
            "(feeds) imports watcher.daemon.config (daemon)",
        ),
        (
            "watcher/daemon/probe.py",
            "from watcher.notify.config import parse_notify",
            "(daemon) imports watcher.notify.config (notify)",
        ),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path: Path, where: str, line: str, expected: str) -> None:
    """The checker itself: each forbidden import is named, with both layers."""
    probe = tmp_path / where
    probe.parent.mkdir(parents=True)
    probe.write_text(line + "\n")
    assert f"{where} {expected}" in layer_violations(probe, tmp_path)


def test_no_test_file_imports_another_test_file() -> None:
    """What tests share lives in helper modules (tests/helpers/), never in a test file."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_"):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
