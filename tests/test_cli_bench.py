"""`tvcli bench --quick`: runs, JSON parses, peers and the 2-D section are reported
whether present or not. No timing is asserted (shared, noisy machines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tvcli.bench import suite as benchsuite
from tvcli.cli import app
from tvcli.cli._app import CLIError

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> dict:
    res = CliRunner().invoke(app, ["bench", "--quick", "--json", *args])
    assert res.exit_code == 0, (res.output, res.exception)
    return json.loads(res.stdout)


def test_bench_quick_all_sections_with_installed_peers():
    out = _bench()
    assert {"machine", "settings", "peers", "table1", "table2d", "length_sweep",
            "batch_sweep"} <= set(out)
    rows = out["table1"]
    tv = [r for r in rows if r["impl"] == "tvcli"]
    assert {r["phase"] for r in tv} >= {"forward", "forward+backward"}
    assert all(r["median_ms"] > 0 and r["repeats"] == 3 for r in tv)
    base = next(r for r in tv if r["solver"] == "direct" and r["phase"] == "forward")
    assert base["x_tvcli"] == pytest.approx(1.0)
    for peer in ("proxTV", "cvxpylayers"):
        prow = [r for r in rows if r["impl"] == peer]
        assert prow, f"no row for {peer}"
        status = out["peers"][peer]
        if status.startswith(("not installed", "unusable")):
            # One row that says why, with no number (null in the JSON).
            assert len(prow) == 1 and status in prow[0]["note"]
            assert prow[0]["median_ms"] is None
        else:
            assert all(r["median_ms"] > 0 for r in prow)
    cvx = [r for r in rows if r["impl"] == "cvxpylayers" and r["median_ms"] is not None]
    if cvx:  # extrapolated and says so, with its gradient error against tvcli
        assert all(r["extrapolated"] and "scaled linearly" in r["note"] for r in cvx)
        bwd = next(r for r in cvx if r["phase"] == "backward")
        assert bwd["max_abs_err_grad_x"] < 1e-3
    assert sorted({r["n"] for r in out["length_sweep"]}) == [32, 1000]
    assert sorted({r["batch"] for r in out["batch_sweep"]}) == [1, 16]
    assert out["table2d"]["status"].startswith(("ok", "not available"))


def test_bench_missing_peers_are_listed(monkeypatch):
    monkeypatch.setattr(benchsuite, "_proxtv", lambda: None)
    monkeypatch.setattr(benchsuite, "peer_versions",
                        lambda: {"proxTV": "not installed", "cvxpylayers": "not installed"})
    out = _bench("--section", "table1")
    notes = {r["impl"]: r["note"] for r in out["table1"] if r["impl"] != "tvcli"}
    assert "not installed" in notes["proxTV"] and "not installed" in notes["cvxpylayers"]
    # Not measured: NaN inside, null in the (strict) JSON.
    assert all(r["median_ms"] is None for r in out["table1"] if r["impl"] != "tvcli")
    # The rich report prints them too, without crashing on NaN.
    res = CliRunner().invoke(app, ["bench", "--quick", "--section", "table1"])
    assert res.exit_code == 0 and "not installed" in res.stdout


def test_bench_2d_section_uses_bench2d_when_present(monkeypatch):
    # The tv2d branch's API: bench_photo(repeats, peers=, quick=) -> dict.
    photo_only = types.ModuleType("tvcli.bench.tv2d")  # bench_photo only, no bench_layer
    photo_only.bench_photo = lambda repeats, peers=True, quick=False: {
        "image": "fake", "shape": [8, 8], "lam": 0.1,
        "to_target": [{"method": "tvcli converged", "target": 1e-3, "ms": 2.0, "error": 5e-4,
                       "setting": "K=10", "note": ""}],
        "peers": [{"method": "proxTV tv1_2d", "ms": 9.0, "max_abs_error": 2e-3,
                   "problem": "same"}]}
    monkeypatch.setitem(sys.modules, "tvcli.bench.tv2d", photo_only)
    sec = _bench("--section", "2d")["table2d"]
    assert sec["status"] == "ok" and sec["source"] == "tvcli.bench.tv2d.bench_photo"
    assert [r["method"] for r in sec["rows"]] == ["tvcli converged", "proxTV tv1_2d"]
    assert sec["rows"][0]["max_abs_error"] == 5e-4 and sec["rows"][1]["note"] == "same"
    monkeypatch.setitem(sys.modules, "tvcli.bench.tv2d", None)  # import now fails
    assert _bench("--section", "2d")["table2d"]["status"].startswith("not available")


def test_bench_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "b.png"
    res = CliRunner().invoke(app, ["bench", "--quick", "--no-peers", "--section",
                                   "length,batch", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, msg", [
    (["--section", "table1,bogus"], "unknown section 'bogus'"),
    (["--repeats", "0"], "--repeats"),
    (["--plot", "/nonexistent-dir/x.png"], "does not exist"),
])
def test_bench_usage_errors(args, msg):
    res = CliRunner().invoke(app, ["bench", "--quick", *args])
    assert isinstance(res.exception, CLIError) and res.exception.code == 2
    assert msg in str(res.exception)


def test_bench_subprocess_json():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", "from tvcli.cli import main; main()", "bench",
                        "--quick", "--json", "--no-peers", "--section", "length"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["peers"] == {"proxTV": "skipped", "cvxpylayers": "skipped",
                            "pyproximal": "skipped"}
    assert all(row["impl"] == "tvcli" for row in out["length_sweep"])
    r = subprocess.run([sys.executable, "-c", "from tvcli.cli import main; main()", "bench",
                        "--section", "nope"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("tvcli: error: unknown section")


def test_make_report_from_quick_json(tmp_path):
    """benchmarks/make_report.py turns `bench --json` into markdown (and a plot)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import make_report
    finally:
        sys.path.pop(0)
    out = _bench("--no-peers")
    src = tmp_path / "b.json"
    src.write_text(json.dumps(out))
    md = tmp_path / "docs" / "benchmarks.md"
    plot = "none" if not _has_matplotlib() else str(tmp_path / "docs" / "b.png")
    assert make_report.main([str(src), "--out", str(md), "--plot", plot]) == 0
    text = md.read_text()
    assert "### Table 1 workload" in text and "| tvcli direct | cpu" in text
    assert "QUICK" in text and out["machine"]["date"] in text
    assert "### Length sweep" in text and "### Batch sweep" in text
    assert "### TV variants" in text and "| iso 3-D 12x12x12 | tvcli prox_tv tol 1e-3 |" in text
    if plot != "none":
        assert "](b.png)" in text and Path(plot).is_file()
    assert make_report.main([str(tmp_path / "missing.json"), "--out", str(md)]) == 2
    # Hand-written sections around the generated block survive a regeneration.
    md.write_text("# Benchmarks\n\nhand-written intro\n\n" + md.read_text().split("\n", 2)[2]
                  + "\n## other benchmark\n\nkept\n")
    assert make_report.main([str(src), "--out", str(md), "--plot", "none"]) == 0
    text2 = md.read_text()
    assert "hand-written intro" in text2 and "## other benchmark\n\nkept" in text2
    assert text2.count(make_report.BEGIN) == 1 and text2.count("### Table 1 workload") == 1
    # A page without markers gets the block appended.
    md.write_text("# Benchmarks\n\nold page\n")
    assert make_report.main([str(src), "--out", str(md), "--plot", "none"]) == 0
    text3 = md.read_text()
    assert text3.startswith("# Benchmarks\n\nold page\n") and make_report.END in text3


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_bench_peers_leave_torch_threads_alone():
    """proxTV's tvgen resets the process's OpenMP thread count; the bench puts
    torch's back so that later tvcli rows run with the same threads."""
    import torch

    before = torch.get_num_threads()
    _bench("--section", "table1,batch")
    assert torch.get_num_threads() == before


def test_bench_variants_section_rows_accuracy_and_missing_peers():
    """iso / colour / 3-D: every workload has tvcli's rows with their error against
    the tight reference; a peer is timed where installed and has the variant, else
    its row says why (no number)."""
    from tvcli.bench import tv_variants

    out = _bench("--section", "variants")
    sec = out["variants"]
    assert sec["status"] == "ok" and sec["threads"] == 1
    rows = sec["rows"]
    assert list(dict.fromkeys(r["workload"] for r in rows)) == list(tv_variants.WORKLOADS)
    for wl in tv_variants.WORKLOADS:
        mine = {r["method"]: r for r in rows if r["workload"] == wl}
        base = mine[tv_variants.BASE]
        assert base["x_tvcli"] == pytest.approx(1.0) and base["repeats"] == 3
        for tol in ("1e-2", "1e-3"):  # within the certified bound (+ the reference's)
            r = mine[f"tvcli prox_tv tol {tol}"]
            assert r["median_ms"] > 0 and r["rms_error"] <= float(tol) + 1e-5
        for r in mine.values():
            if r["median_ms"] is None:
                assert r["note"] and r["rms_error"] is None and r["x_tvcli"] is None
            else:
                assert r["rms_error"] is not None and r["max_error"] >= r["rms_error"]
    colour = [r for r in rows if r["workload"] == "colour 2-D"
              and r["method"].startswith(("scikit-image", "pyproximal"))]
    assert colour and all(r["median_ms"] is None for r in colour)  # no colour TV there
    if out["peers"]["pyproximal"][0].isdigit():  # installed: timed on iso 2-D and 3-D
        assert any(r["method"].startswith("pyproximal") and r["median_ms"]
                   for r in rows if r["workload"] == "iso 3-D")
    res = CliRunner().invoke(app, ["bench", "--quick", "--no-peers", "--section", "variants"])
    assert res.exit_code == 0 and "TV variants: iso 3-D" in res.stdout


def test_bench_variants_no_peers_has_tvcli_rows_only():
    out = _bench("--no-peers", "--section", "variants")
    assert {r["method"].split()[0] for r in out["variants"]["rows"]} == {"tvcli"}
