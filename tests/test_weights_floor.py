"""Every shipped model beats plain TV on the validation protocol
(:mod:`tvcli.learning.tasks.denoise`; numbers written by ``benchmarks/tv_floor.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvcli.learning.tasks.denoise import val_sigmas
from tvcli.models import list_weights


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
        if e.get("task") == "wsol":
            # localizers: classification above chance on the test split (the scores,
            # with a map-free centre prior beside them, are in wsol_test; docs/wsol.md)
            t = e["wsol_test"]
            assert t["top1_cls"] > 10.0 and t["n"] >= 100, (e["file"], t)
            continue
        if e.get("task") == "classify":
            # classifiers have no TV floor: chance (10 %) is theirs, and the test
            # below re-scores them on the images behind their recorded val_top1
            assert e["val_top1"] > 10.0, (e["file"], e["val_top1"])
            continue
        vf = e.get("val_full")
        assert vf, f"{e['file']}: no val_full in the manifest (run benchmarks/tv_floor.py)"
        for s in val_sigmas(e):
            r = vf[f"{s:g}"]
            assert r["psnr"] >= r["tv_psnr"], (
                f"{e['file']} at sigma {s:g}: {r['psnr']:.2f} dB, below plain TV's "
                f"{r['tv_psnr']:.2f} dB")


CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / \
    "cifar10-jpeg.tar.gz"


def test_shipped_classifiers_reproduce_their_recorded_accuracy():
    """A shipped classifier is well above chance (10 %), and re-scoring it on the
    images its recorded ``val_top1`` came from (the first 100 CIFAR-10 test images of
    each class) gives that figure again, so the weights file and the manifest agree."""
    entries = [e for e in list_weights() if e.get("task") == "classify"]
    if not entries:
        pytest.skip("no classifier in weights/")
    for e in entries:
        assert e["val_top1"] >= 50.0, (e["file"], e["val_top1"])
        assert e["steps"] > 0 and e["val_split"] == "test"
    if not CIFAR10.exists():
        pytest.skip("needs ../shared/data/cifar10")
    import torch

    from tvcli.data.cifar import load_cifar10
    from tvcli.learning.tasks.classify import top1_accuracy
    from tvcli.models import load_pretrained

    torch.manual_seed(0)
    for e in entries:
        per_class = e["val_per_class"]
        images, labels = load_cifar10(CIFAR10, "test", per_class)
        model, _ = load_pretrained(e["model"])
        acc = top1_accuracy(model, images, labels)
        assert abs(acc - e["val_top1"]) <= 0.2, (e["file"], acc, e["val_top1"])
