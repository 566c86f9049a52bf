"""benchmarks/tv_floor.py: what it may reuse from a denoise_eval JSON."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tv_floor():
    spec = importlib.util.spec_from_file_location("tv_floor", ROOT / "benchmarks" / "tv_floor.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_model_row_is_reused_only_for_the_weights_that_made_it(tv_floor) -> None:
    old = {"methods": {"25": {
        "TV prox (best lam 0.07)": {"scores": [[28.0, 0.7], [29.0, 0.8]]},
        "tvcli dncnn": {"scores": [[30.0, 0.8], [31.0, 0.9]], "weights_sha256": "aa"},
        "tvcli ffdnet": {"scores": [[32.0, 0.9]]}}}}  # an old row: no weights recorded
    reused = tv_floor.reused_psnr
    assert reused(old, "TV", 25) == pytest.approx(28.5)
    assert reused(old, "tvcli dncnn", 25, "aa") == pytest.approx(30.5)
    assert reused(old, "tvcli dncnn", 25, "bb") is None  # re-exported since: score again
    assert reused(old, "tvcli dncnn", 25) is None
    assert reused(old, "tvcli ffdnet", 25, "cc") is None
    assert reused(old, "tvcli dncnn", 50, "aa") is None
    assert reused(None, "TV", 25) is None


def test_the_committed_json_matches_the_shipped_dncnn_pair(tv_floor) -> None:
    """docs/denoising_val.json's DnCNN rows name the shipped files' sha256 and their
    mean equals the val_full the manifest records (one protocol, one model)."""
    import json

    old = json.loads((ROOT / "docs" / "denoising_val.json").read_text())
    man = json.loads((ROOT / "weights" / "manifest.json").read_text())["weights"]
    dn = [e for e in man if e["model"] in ("dncnn", "dncnn-tv")]
    if not dn:
        pytest.skip("no DnCNN weights shipped")
    for e in dn:
        for s, v in e["val_full"].items():
            got = tv_floor.reused_psnr(old, f"tvcli {e['model']}", float(s), e["sha256"])
            assert got == pytest.approx(v["psnr"], abs=5e-4), (e["file"], s)


def test_denoise_eval_rows_record_the_weights_that_made_them() -> None:
    import sys

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("denoise_eval",
                                                  ROOT / "benchmarks" / "denoise_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from tvcli.models import load_pretrained

    try:
        _, entry = load_pretrained("dncnn", 25)
    except Exception as exc:  # no shipped weights in this checkout
        pytest.skip(str(exc))
    clean = torch.full((3, 16, 16), 0.5)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    rows, notes = {}, {}
    mod.run_models(["dncnn"], [noisy], [clean], [16 * 16 / 1e6], 25.0, rows, notes)
    assert not notes and rows["tvcli dncnn"]["weights_sha256"] == entry["sha256"]
