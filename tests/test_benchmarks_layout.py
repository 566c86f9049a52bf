"""benchmarks/ holds only scripts that regenerate a figure or table of docs/ (issue 24):
each is named in benchmarks/README.md and cited by a doc, what they import from
tvcli exists, and they import each other without a cycle."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
HELPERS = {"edges_common.py"}  # modules the scripts share, not scripts themselves
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name not in HELPERS)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in ``path`` (names empty for
    ``import module``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_every_script_is_in_the_readme_table_and_cited_by_a_doc() -> None:
    readme = (BENCH / "README.md").read_text()
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for name in SCRIPTS:
        row = [ln for ln in readme.splitlines() if ln.startswith(f"| `{name}`")]
        assert row, f"{name} has no row in benchmarks/README.md"
        assert f"benchmarks/{name}" in docs or f"{name}" in docs, f"no doc cites {name}"
    for name in HELPERS:
        assert f"`{name}`" in readme, f"benchmarks/README.md does not say what {name} is"
    named = {w.strip("`") for ln in readme.splitlines() if ln.startswith("| `")
             for w in ln.split("|")[1].split()}
    assert not {n for n in named if n.endswith(".py")} - set(SCRIPTS) - HELPERS, (
        "benchmarks/README.md names scripts that are gone")


@pytest.mark.parametrize("name", sorted(p.name for p in BENCH.glob("*.py")))
def test_what_a_script_imports_from_tvcli_exists(name: str) -> None:
    for module, names in _imports(BENCH / name):
        if module.split(".")[0] != "tvcli" or module == "tvcli._C":
            continue
        mod = importlib.import_module(module)
        for n in names:
            assert hasattr(mod, n) or importlib.util.find_spec(f"{module}.{n}"), (
                f"benchmarks/{name}: `from {module} import {n}` fails")


def test_no_import_cycle_in_benchmarks() -> None:
    local = {p.stem for p in BENCH.glob("*.py")}
    graph = {p.stem: {m for m, _ in _imports(p) if m in local} for p in BENCH.glob("*.py")}

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, "import cycle: " + " -> ".join([*path, node])
        for nxt in graph[node]:
            visit(nxt, [*path, node])

    for start in graph:
        visit(start, [])
