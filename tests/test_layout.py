"""The package layout (issue 24): no import cycles, and the engine imports nothing
from the training side. Imports are read from the source (module level and inside
functions and ``if TYPE_CHECKING:`` blocks alike), so a cycle hidden in a
function-level or type-only import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The training side, and the two packages allowed to use it (the command line and
# the solver benchmarks aside, everything else is the engine and image tool).
TRAINING = ("tvcli.learning",)
USERS = TRAINING + ("tvcli.cli",)


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, known: set[str], here: str) -> set[str]:
    """The known modules a module's source imports (``from a import b`` counts as
    ``a.b`` when that is a module, else ``a``)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in out if m in known and m != here}


def import_graph(roots: list[Path]) -> dict[str, set[str]]:
    """{module: modules it imports} over the .py files under ``roots`` (module names
    relative to each root's parent: ``tvcli.learning.train.loop``; ``benchmarks.x`` scripts
    by their file stem, as they import each other)."""
    files: dict[str, Path] = {}
    for root in roots:
        base = root.parent if (root / "__init__.py").exists() else root
        for p in sorted(root.rglob("*.py")):
            files[_module_name(p, base)] = p
    known = set(files)
    return {m: _imports(ast.parse(p.read_text()), known, m) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = dfs(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = dfs(m)
            if found:
                return found
    return None


def test_no_import_cycles_in_tvcli():
    """(benchmarks/: tests/test_benchmarks_layout.py)"""
    graph = import_graph([ROOT / "tvcli"])
    assert len(graph) > 50
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_check_can_fail(tmp_path):
    """A cycle through a function-level import is found (the check is not vacuous)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import pkg.b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    import pkg.a\n")
    graph = import_graph([pkg])
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert graph["pkg.c"] == {"pkg.a"}  # a type-only import is a dependency too


def test_engine_imports_nothing_from_the_training_side():
    graph = import_graph([ROOT / "tvcli"])
    engine = [m for m in graph if m != "tvcli" and not m.startswith(USERS)]
    assert "tvcli.prox" in engine and "tvcli.models.registry" in engine
    bad = sorted((m, n) for m in engine for n in graph[m] if n.startswith(TRAINING))
    assert not bad, bad


def test_old_training_modules_are_gone():
    """One home per concern: the training side lives in tvcli/learning/train and
    tvcli/learning/tasks, not at the package root."""
    old = ["train.py", "train_setup.py", "train_eps.py", "edge_task.py", "classify_task.py",
           "gpu_train.py", "datapack.py", "distributed.py"]
    assert not [f for f in old if (ROOT / "tvcli" / f).exists()]
    words = ("train", "task", "gpu", "distributed", "datapack")
    root = [p.stem for p in (ROOT / "tvcli").iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").exists())]
    assert not [n for n in root if any(w in n for w in words)], root
