"""The package's layering, read from its source (an AST walk, nothing imported): no import cycle,
the torch-free layers stay torch-free, lower layers never import higher ones.

Function-level imports count as imports (they only move the cost); ``if TYPE_CHECKING:`` blocks do
not (they never run). tests/test_job.py keeps the end-to-end check: a launcher-side process whose
``sys.modules`` holds no torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# Higher may import lower or equal, never higher. diagnostics' torch-free modules (the findings
# in words, the plots, the pending ends of runs) sit with the report that reads them.
RANKS = {
    "training": 5,
    "diagnostics": 4,
    "init": 4,
    "models": 4,
    "report": 3,
    "race": 3,
    **dict.fromkeys(
        [
            "diagnostics.findings",
            "diagnostics.plots",
            "diagnostics.plot_worker",
            "diagnostics.pending",
        ],
        3,
    ),
    "stats": 2,
    "tracking": 1,
    "vocab": 0,
    "naming": 0,
    "errors": 0,
    "": 0,
}
# The entry points are outside the ranks: anyone may use launch's console and status files, but
# launch (and cli) import only these, never training, models or init.
ENTRIES = ("launch", "cli", "api")  # api: the Python API, cli's counterpart
ENTRY_MAY_IMPORT = (
    "launch",
    "tracking",
    "report",
    "race",
    "stats",
    "vocab",
    "naming",
    "errors",
    "diagnostics.findings",
    "diagnostics.plots",
    "diagnostics.plot_worker",
    "diagnostics.pending",
)
TORCH_FREE = (
    "launch",
    "tracking",
    "report",
    "race",
    "stats",
    "vocab",
    "naming",
    "errors",
    "cli",
    "api",
)
TORCH = {"torch", "torchvision", "lightning", "pytorch_lightning"}


def _modules() -> dict[str, Path]:
    """Module name relative to ``initsweep`` ("" for the package itself) -> file."""
    out = {}
    for path in (SRC / "initsweep").rglob("*.py"):
        parts = path.relative_to(SRC / "initsweep").with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import the module runs; package modules are
    named relative to ``initsweep``, others by their top-level name."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def add(full: str, top: bool) -> None:
        if full == "initsweep" or full.startswith("initsweep."):
            rel = full.removeprefix("initsweep").removeprefix(".")
            while rel not in MODULES:  # `from pkg.mod import function` -> pkg.mod
                rel = rel.rpartition(".")[0]
            found.append((rel, top))
        else:
            found.append((full.split(".")[0], top))

    def walk(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, top)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = ("initsweep." + package).rstrip(".").split(".")
                    base = ".".join(anchor[: len(anchor) - child.level + 1] + [base]).rstrip(".")
                for alias in child.names:
                    add(f"{base}.{alias.name}", top)
            walk(child, top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    walk(ast.parse(path.read_text()), True)
    return found


IMPORTS = {name: _imports(name) for name in MODULES}
EDGES = {(a, b) for a, found in IMPORTS.items() for b, _ in found if b in MODULES and a != b}


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def _rank(name: str) -> int:
    while name not in RANKS:  # "" (the package itself) ends the walk
        name = name.rpartition(".")[0]
    return RANKS[name]


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b in EDGES:
        graph[a].add(b)
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif state[nxt] == 0:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module, [])
    assert not cycles, cycles


def test_torch_free_layers_import_no_torch_at_module_level():
    bad = set()
    for start in (m for m in MODULES if _under(m, TORCH_FREE)):
        seen, todo = {start}, [start]
        while todo:
            module = todo.pop()
            parents = [module.rpartition(".")[0]] if "." in module else []  # its package runs
            for name, top in [*IMPORTS[module], *((p, True) for p in parents)]:
                if top and name in TORCH:
                    bad.add(f"{start} imports {name} at module level, through {module}")
                elif top and name in MODULES and name not in seen:
                    seen.add(name)
                    todo.append(name)
    assert not bad, sorted(bad)


def test_lower_layers_never_import_higher_ones():
    bad = []
    for a, b in sorted(EDGES):
        if _under(a, ENTRIES):
            ok = _under(b, ENTRY_MAY_IMPORT)
        elif _under(b, ENTRIES):
            ok = _under(b, ("launch",))  # launch's console and status files serve everyone
        else:
            ok = _rank(b) <= _rank(a)
        if not ok:
            bad.append(f"{a} -> {b}")
    assert not bad, bad
