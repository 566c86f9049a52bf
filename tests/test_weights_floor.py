"""Every shipped model beats plain TV on the validation protocol
(:mod:`tvcli.models.tvfloor`; numbers written by ``benchmarks/tv_floor.py``)."""

from __future__ import annotations

from tvcli.models import list_weights
from tvcli.models.tvfloor import val_sigmas


def test_every_shipped_model_beats_best_lam_tv():
    weights = list_weights()
    assert weights, "no shipped weights"
    for e in weights:
        if e.get("task") == "edges":
            # edge detectors: the floor is Canny (bsds_test vs canny_same_protocol)
            b = e["bsds_test"]
            for k in ("ods", "ois", "ap"):
                assert b[k] > b["canny_same_protocol"][k], (e["file"], k)
            continue
        if e.get("task") == "eps":
            # edge-preserving smoothing: the floor is the best-lam TV prox on the same
            # test photos of the substitute benchmark (benchmarks/eps_eval.py)
            t = e["eps_test"]
            for k in ("wrmse", "wmae"):
                assert t[k] < t[f"tv_{k}"], (
                    f"{e['file']}: {k} {t[k]:.3f}, not below the TV prox's {t[f'tv_{k}']:.3f}")
            continue
        vf = e.get("val_full")
        assert vf, f"{e['file']}: no val_full in the manifest (run benchmarks/tv_floor.py)"
        for s in val_sigmas(e):
            r = vf[f"{s:g}"]
            assert r["psnr"] >= r["tv_psnr"], (
                f"{e['file']} at sigma {s:g}: {r['psnr']:.2f} dB, below plain TV's "
                f"{r['tv_psnr']:.2f} dB")
