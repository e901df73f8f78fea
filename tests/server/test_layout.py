"""The package's shape: no import cycle inside ``truckx_server``, and imports run one way,
handlers -> domain -> storage / bus. Read from the source with ``ast`` (imports under ``TYPE_CHECKING``
count too: a cycle of type hints is still a cycle a reader has to untangle)."""

from __future__ import annotations

import ast
from pathlib import Path

import truckx_server

ROOT = Path(truckx_server.__file__).parent
PACKAGE = "truckx_server"

#: layers, lowest first; a module may import from its own layer or a lower one
LAYERS = [
    ("errors", "vocab", "config", "models", "paging", "logs", "metrics", "auth", "ratelimit", "listener", "privacy"),
    ("storage", "migrate"),
    ("hub", "bus", "ingest", "media"),
    ("domain",),
    ("wiring", "openapi"),
    ("handlers",),
    ("app", "__main__"),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def imports_of(path: Path) -> set[str]:
    """The ``truckx_server`` modules that ``path`` imports (resolving relative imports)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    modules = {module_name(p) for p in ROOT.rglob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from . import x" / "from .pkg import mod" may name modules
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in ROOT.rglob("*.py") if "sql/versions" not in p.as_posix()}


def top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (depth-first search), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_walker_sees_imports_and_cycles() -> None:
    g = graph()
    assert f"{PACKAGE}.domain.devices" in g[f"{PACKAGE}.wiring"]  # absolute-from-relative
    assert f"{PACKAGE}.storage.sql.engine" in g[f"{PACKAGE}.storage.sql.devices"]  # sibling
    assert f"{PACKAGE}.bus" in g[f"{PACKAGE}.domain.devices"]  # parent package
    assert f"{PACKAGE}.openapi.alarms" in g[f"{PACKAGE}.openapi"]  # "from . import alarms"
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_imports_run_one_way() -> None:
    wrong = []
    for module, targets in graph().items():
        if module == PACKAGE:
            continue
        mine = LAYER_OF[top(module)]
        for target in targets:
            if target == PACKAGE:
                continue
            theirs = LAYER_OF[top(target)]
            if theirs > mine:
                wrong.append(f"{module} imports {target} (a higher layer)")
    assert not wrong, "\n".join(wrong)


def test_domain_modules_do_not_import_each_other() -> None:
    wrong = [f"{m} imports {t}" for m, ts in graph().items() if m.startswith(f"{PACKAGE}.domain.")
             for t in ts if t.startswith(f"{PACKAGE}.domain.")]
    assert not wrong, "\n".join(wrong)


def test_every_module_has_a_layer() -> None:
    assert {top(m) for m in graph() if m != PACKAGE} <= set(LAYER_OF)
