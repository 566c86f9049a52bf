"""`.ci/gpu_check.sh --cpu-dry-run`: the one-shot GPU check's plumbing (phases,
time boxes, output files, benchmark sections) with the CPU engine, so that the
run on a GPU machine never fails on a typo (docs/gpu.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tvcli._extension import HAS_EXT

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "gpu_check.sh"


@pytest.mark.skipif(not HAS_EXT or shutil.which("bash") is None or shutil.which("timeout")
                    is None, reason="needs the compiled engine, bash and timeout")
def test_gpu_check_cpu_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A generous budget: the phases' limits are for a GPU machine; here the point is
    # the plumbing, on a possibly loaded CI machine.
    env = {**os.environ, "TVCLI_PYTHON": sys.executable, "TVCLI_GPU_CHECK_BUDGET": "900"}
    r = subprocess.run(["bash", str(SCRIPT), "--cpu-dry-run", str(out)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=1000)
    summary = (out / "summary.txt").read_text()
    logs = "".join((out / f).read_text()[-2000:] for f in ("build.log", "tests.log", "bench.log")
                   if (out / f).exists())
    assert r.returncode == 0, summary + r.stderr[-3000:] + logs
    phases = dict(re.findall(r"^(\w+) rc=(\S+)", summary, flags=re.M))
    assert phases == {"env": "0", "build": "0", "tests": "0", "bench_table1": "0",
                      "bench_layer": "0", "bench_converged": "0", "bench_large": "0"}
    # At most 8 result files, none hidden left behind.
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.jsonl", "bench.log", "build.log", "env.txt", "summary.txt",
                     "tests.log", "tests.xml"]
    assert "torch" in (out / "env.txt").read_text()
    assert "skipped" in (out / "tests.log").read_text()  # no GPU here: test_cuda.py skips
    sections = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    assert [s["section"] for s in sections] == ["table1", "layer", "converged", "large"]
    assert all(s["settings"]["devices"] == ["cpu"] for s in sections)
    table1 = sections[0]["table1"]
    assert {(r["solver"], r["phase"]) for r in table1} >= {("direct", "forward"),
                                                           ("pn", "forward")}
    for s in sections[1:]:
        rows = s[s["section"]]
        assert rows and all("status" not in r and r["median_ms"] > 0 for r in rows), rows
    conv = sections[2]["converged"]
    assert {r["tol"] for r in conv} == {1e-3, 1e-4} and all(r["converged"] for r in conv)


def test_gpu_check_rejects_unknown_option(tmp_path: Path) -> None:
    r = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
