"""benchmarks/denoise_table6.py (the paper's Table 6 driver behind
``benchmarks/denoise_eval.py --table6``) on tiny synthetic CBSD68 / Kodak24 folders:
seeded noise (the task's, bit for bit as before), the subset / full-set rows of the
DnCNN pair, and the report; denoise_eval.py shares its scoring without a cycle."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("denoise_table6",
                                                  ROOT / "benchmarks" / "denoise_table6.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _eval_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("denoise_eval",
                                                  ROOT / "benchmarks" / "denoise_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sets(root: Path) -> Path:
    """Smooth 20x24 colour images: 9 in CBSD68 (subset = images 0 and 8), 2 in Kodak24."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:20, 0:24] / 24.0
    for name, n in (("CBSD68", 9), ("Kodak24", 2)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            base = np.stack([yy, xx, (yy + xx) / 2], -1) * rng.uniform(0.3, 1.0)
            Image.fromarray(np.uint8(255 * base)).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def t6():
    from tvcli.models import list_weights

    if not any(e["model"] == "dncnn" and e.get("sigma") == 25 for e in list_weights()):
        pytest.skip("no shipped dncnn (sigma 25) weights")
    return _module()


def test_noise_is_seeded_per_set_image_and_sigma(t6) -> None:
    import torch

    clean = torch.full((3, 8, 8), 0.9)
    a = t6.noisy_image(clean, "CBSD68", 25, 3, "unclipped")
    assert torch.equal(a, t6.noisy_image(clean, "CBSD68", 25, 3, "unclipped"))
    assert not torch.equal(a, t6.noisy_image(clean, "Kodak24", 25, 3, "unclipped"))
    assert not torch.equal(a, t6.noisy_image(clean, "CBSD68", 25, 4, "unclipped"))
    b = t6.noisy_image(clean, "CBSD68", 25, 3, "clipped")
    assert torch.equal(b, a.clamp(0, 1)) and not torch.equal(a, b)  # some noise went past
    assert float((a - clean).std()) == pytest.approx(25 / 255, rel=0.25)


def test_noise_is_the_tasks_add_noise_bit_for_bit() -> None:
    """Both denoising reports draw their noise with tvcli.learning.tasks.denoise.add_noise and
    get the very noise they drew before it moved there (seed 1000*sigma + index,
    + 100000 for Kodak24; float32 on the CPU)."""
    import torch

    def old(clean, sigma, seed):  # the reports' own code before issue 24
        gen = torch.Generator().manual_seed(seed)
        return clean + sigma / 255.0 * torch.randn(clean.shape, generator=gen)

    t6, ev = _module(), _eval_module()
    clean = torch.rand((3, 12, 10), generator=torch.Generator().manual_seed(7))
    for sigma in (15, 25, 50):
        for i in (0, 3, 67):
            want = old(clean, sigma, 1000 * sigma + i)
            assert torch.equal(ev.add_noise(clean, float(sigma), i), want)
            assert torch.equal(t6.noisy_image(clean, "CBSD68", sigma, i, "unclipped"), want)
            kodak = old(clean, sigma, 1000 * sigma + i + 100000)
            assert torch.equal(t6.noisy_image(clean, "Kodak24", sigma, i, "unclipped"), kodak)
            assert torch.equal(t6.noisy_image(clean, "Kodak24", sigma, i, "clipped"),
                               kodak.clamp(0, 1))


def test_the_two_reports_share_one_scoring_and_no_import_cycle() -> None:
    """denoise_eval.py imports the methods and the scoring from denoise_table6.py,
    never the other way round (the import cycle of issue 24)."""
    import ast

    src = (ROOT / "benchmarks" / "denoise_table6.py").read_text()
    imported = {a.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import)
                for a in n.names} | {n.module for n in ast.walk(ast.parse(src))
                                     if isinstance(n, ast.ImportFrom)}
    assert "denoise_eval" not in imported
    ev = _eval_module()
    assert ev.score.__module__ == "denoise_table6" and ev.run_scico.__module__ == "denoise_table6"


def test_dncnn_pair_subset_then_full_rows_and_report(t6, tmp_path: Path) -> None:
    root = _sets(tmp_path / "sets")
    js = tmp_path / "t6.json"
    kw = dict(root=root, json_path=js, scico_py=None, sigmas=(25,), clips=("unclipped",))
    res = t6.evaluate(methods=["noisy", "dncnn"], redo=[], **kw)
    assert not res["notes"], res["notes"]
    sub = "CBSD68|25|unclipped|tvcli dncnn (σ=25) (subset)"
    ps = res["rows"][sub]["psnr"]
    assert [i for i, p in enumerate(ps) if p is not None] == [0, 8]
    noisy = res["rows"]["CBSD68|25|unclipped|noisy"]["psnr"]
    assert all(p is not None for p in noisy) and len(noisy) == 9
    # --dncnn-full: every image, and the subset row is superseded, not kept beside it
    res = t6.evaluate(methods=["dncnn"], redo=["dncnn"], dncnn_full=True, **kw)
    full = res["rows"]["CBSD68|25|unclipped|tvcli dncnn (σ=25)"]["psnr"]
    assert sub not in res["rows"] and all(p is not None for p in full)
    assert full[0] == pytest.approx(ps[0], abs=1e-6)  # same noise, same weights
    md = t6.to_markdown(res, "test machine", {"tvcli dncnn (σ=25)": "budget X"})
    table = md.split("## Noisy input unclipped: all images", 1)[1].split("##", 1)[0]
    row = next(ln for ln in table.splitlines() if ln.startswith("| tvcli dncnn (σ=25) |"))
    assert row.endswith("| budget X |") and "-" not in row.split("|")[2]


def test_budget_column_covers_the_shipped_denoisers_only() -> None:
    """The report's budget per row comes from weights/manifest.json, which also
    lists classifiers and edge detectors (no sigma): they are skipped, not a crash."""
    mod = _eval_module()
    from tvcli.models import list_weights

    budgets = mod._budgets()
    for e in list_weights():
        if e.get("sigma") is not None or e.get("sigma_range"):
            tag = "blind" if e.get("sigma_range") else f"σ={e['sigma']:g}"
            want = e.get("budget_note") or f"{e['steps']} steps x {e['batch']}"
            assert budgets[f"tvcli {e['model']} ({tag})"].startswith(want)
    assert not any(k.startswith("tvcli allconv") or k.startswith("tvcli dexined")
                   for k in budgets)
