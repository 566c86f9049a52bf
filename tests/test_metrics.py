"""tvcli.metrics and tvcli.io: hand-computed cases, scikit-image agreement, BSDS edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tvcli import metrics as M
from tvcli.io import ImageReadError, read_image, to_tensor

# ---------------------------------------------------------------- PSNR / MSE


def test_psnr_hand_computed():
    # One pixel off by 0.1 in a 2 x 2 image: MSE = 0.01 / 4, PSNR = 10 log10(400) dB.
    a = torch.zeros(2, 2)
    b = a.clone()
    b[0, 0] = 0.1
    assert float(M.mse(a, b)) == pytest.approx(0.0025)
    assert float(M.psnr(a, b, 1.0)) == pytest.approx(10 * math.log10(400), abs=1e-5)
    # data_range scales the peak: 255 with 8-bit-sized errors gives the same dB.
    assert float(M.psnr(a * 255, b * 255, 255.0)) == pytest.approx(10 * math.log10(400), abs=1e-4)


def test_psnr_batched_shapes_and_identity():
    x = torch.rand(3, 2, 8, 9)
    y = x.clone()
    y[1] += 0.5
    v = M.psnr(x, y, 1.0)
    assert v.shape == (3,)
    assert math.isinf(float(v[0])) and math.isinf(float(v[2]))
    assert float(v[1]) == pytest.approx(10 * math.log10(1 / 0.25), abs=1e-4)
    assert M.psnr(x[0], y[0]).shape == ()
    assert M.psnr(x[0, 0], y[0, 0]).shape == ()


def test_psnr_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        M.psnr(torch.zeros(4, 4), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(torch.zeros(4, 4), torch.ones(4, 4), 0.0)
    with pytest.raises(ValueError, match="shape"):
        M.psnr(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 1, 1, 4, 4))


# ---------------------------------------------------------------- SSIM


def test_ssim_identity_and_constant_shift():
    x = torch.rand(1, 3, 16, 20, dtype=torch.float64)
    assert float(M.ssim(x, x)[0]) == pytest.approx(1.0, abs=1e-12)
    # Constant images a and b: variances 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.6
    c1 = (0.01 * 1.0) ** 2
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    got = M.ssim(torch.full((12, 12), a, dtype=torch.float64),
                 torch.full((12, 12), b, dtype=torch.float64))
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_ssim_too_small():
    with pytest.raises(ValueError, match="at least 11"):
        M.ssim(torch.zeros(10, 30), torch.zeros(10, 30))


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    for shape, rng_max in (((3, 40, 33), 1.0), ((1, 11, 50), 1.0), ((2, 64, 64), 255.0)):
        a = rng.random(shape) * rng_max
        b = np.clip(a + 0.15 * rng_max * rng.standard_normal(shape), 0, rng_max)
        want = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=rng_max,
                                         channel_axis=0)
        got64 = float(M.ssim(torch.from_numpy(a), torch.from_numpy(b), rng_max))
        got32 = float(M.ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float(), rng_max))
        assert got64 == pytest.approx(want, abs=1e-10)
        assert got32 == pytest.approx(want, abs=1e-4)
    # Single-channel 2-D input, and a batch giving one value per image.
    g = skm.structural_similarity(a[0], b[0], gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=255.0)
    batch = M.ssim(torch.from_numpy(np.stack([a[:1], a[:1]])),
                   torch.from_numpy(np.stack([b[:1], a[:1]])), 255.0)
    assert float(M.ssim(torch.from_numpy(a[0]), torch.from_numpy(b[0]), 255.0)) == \
        pytest.approx(g, abs=1e-10)
    assert batch.shape == (2,)
    assert float(batch[0]) == pytest.approx(g, abs=1e-10) and float(batch[1]) == pytest.approx(1)


def test_psnr_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(4)
    a = rng.random((3, 20, 30))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    want = skm.peak_signal_noise_ratio(a, b, data_range=1.0)
    assert float(M.psnr(torch.from_numpy(a), torch.from_numpy(b), 1.0)) == pytest.approx(want)


# ---------------------------------------------------------------- WRMSE / WMAE


def test_weighted_errors_hand_computed():
    # pred = 0; ground truths constant 1 and 3 with votes 3 : 1 -> weights 0.75, 0.25.
    pred = torch.zeros(1, 2, 2)
    gts = torch.stack([torch.ones(1, 2, 2), 3 * torch.ones(1, 2, 2)])
    wmse, wmae = M.weighted_errors(pred, gts, [3, 1])
    assert float(wmse) == pytest.approx(0.75 * 1 + 0.25 * 9)
    assert float(wmae) == pytest.approx(0.75 * 1 + 0.25 * 3)
    # Equal weights when no votes given.
    wmse, _ = M.weighted_errors(pred, gts)
    assert float(wmse) == pytest.approx(5.0)


def test_wrmse_is_root_of_mean_not_mean_of_roots():
    pred = torch.zeros(2, 1, 2, 2)
    gts = torch.stack([torch.ones(1, 1, 2, 2), 3 * torch.ones(1, 1, 2, 2)])  # (N=2, K=1, ...)
    assert float(M.wrmse(pred, gts)) == pytest.approx(math.sqrt((1 + 9) / 2))
    assert float(M.wmae(pred, gts)) == pytest.approx(2.0)
    # Zero-vote padding: the second ground truth of image 0 is ignored.
    gts2 = torch.stack([torch.ones(2, 1, 2, 2), 3 * torch.ones(2, 1, 2, 2)])
    gts2[0, 1] = 100.0
    votes = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    wmse, _ = M.weighted_errors(pred, gts2, votes)
    assert wmse.tolist() == pytest.approx([1.0, 9.0])


def _zhu_pooled(preds, gts, votes):
    """Zhu et al.'s evaluation script, written out in numpy float64: sums over
    every pixel of every image and ground truth, divided by all pixels."""
    sq = ab = 0.0
    npix = 0
    for p, g, v in zip(preds, gts, votes, strict=True):
        w = np.asarray(v, float) / np.sum(v)
        for k in range(len(g)):
            d = np.asarray(p, float) - np.asarray(g[k], float)
            sq += w[k] * np.sum(d * d)
            ab += w[k] * np.sum(np.abs(d))
        npix += np.asarray(p).size
    return math.sqrt(sq / npix), ab / npix


def test_pooled_weighted_errors_match_zhu_script_for_unequal_sizes():
    # Images of different sizes and ground-truth counts: pooling over pixels
    # differs from the mean of per-image values (what the data-set number was
    # before), here by a factor of about 1.5.
    rng = np.random.default_rng(7)
    shapes = [(3, 8, 10), (3, 30, 20), (3, 5, 5)]
    ks = [2, 3, 1]
    preds = [torch.from_numpy(rng.random(s) * 255) for s in shapes]
    gts = [torch.from_numpy(rng.random((k, *s)) * 255 * (i + 1) / 3)
           for i, (k, s) in enumerate(zip(ks, shapes, strict=True))]
    votes = [[3, 1], [1, 2, 5], [4]]
    want = _zhu_pooled(preds, gts, votes)
    got = M.pooled_weighted_errors(preds, gts, votes)
    assert got == pytest.approx(want, rel=1e-12)
    # equal-size batches: wrmse / wmae pool the same way
    p = torch.stack([preds[0], preds[0] + 3])
    g = torch.stack([gts[0], gts[0] * 0.5])
    v = torch.tensor([[3.0, 1.0], [1.0, 1.0]])
    want = _zhu_pooled(list(p), list(g), v.tolist())
    assert float(M.wrmse(p, g, v)) == pytest.approx(want[0], rel=1e-6)
    assert float(M.wmae(p, g, v)) == pytest.approx(want[1], rel=1e-6)
    with pytest.raises(ValueError, match="ground-truth sets"):
        M.pooled_weighted_errors(preds, gts[:2])


def test_weighted_errors_rejects_bad_votes_and_shapes():
    pred = torch.zeros(1, 2, 2)
    gts = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError):
        M.weighted_errors(pred, gts, [-1, 2])
    with pytest.raises(ValueError):
        M.weighted_errors(pred, gts, [0, 0])
    with pytest.raises(ValueError, match="one more axis"):
        M.weighted_errors(pred, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="does not match"):
        M.weighted_errors(pred, torch.zeros(2, 1, 2, 3))


# ---------------------------------------------------------------- edges (BSDS)


def _square(h: int = 48, w: int = 64, off: int = 0) -> np.ndarray:
    g = np.zeros((h, w), bool)
    g[10 + off, 10:50] = g[30 + off, 10:50] = True
    g[10 + off:31 + off, 10] = g[10 + off:31 + off, 50] = True
    return g


def test_bsds_thresholds():
    t = M.bsds_thresholds(99)
    assert t.shape == (99,) and t[0] == pytest.approx(0.01) and t[-1] == pytest.approx(0.99)


@pytest.mark.skipif(not M.edge_backend_available(), reason="pyEdgeEval not installed")
def test_edges_perfect_shifted_and_empty():
    g = _square()
    # Perfect prediction: F close to 1 (thinning may drop a corner pixel or two).
    r = M.edge_ods_ois_ap([g.astype(float)], [[g]], thresholds=9)
    assert r.ods > 0.97 and r.ois > 0.97
    # One-pixel shift: out of tolerance at 0.0075 x diagonal (0.6 px), inside at 0.02 (1.6 px).
    shifted = _square(off=1).astype(float)
    tight = M.edge_ods_ois_ap([shifted], [[g]], thresholds=9)
    loose = M.edge_ods_ois_ap([shifted], [[g]], thresholds=9, max_dist=0.02)
    assert tight.ods < 0.5 < 0.97 < loose.ods
    # Empty prediction: F = 0, AP = 0.
    empty = M.edge_ods_ois_ap([np.zeros_like(g, float)], [[g]], thresholds=9)
    assert empty.ods == 0 and empty.ap == 0
    with pytest.raises(ValueError, match="sizes differ"):
        M.edge_counts(np.zeros((10, 10)), [np.zeros((10, 11))], thresholds=3)


@pytest.mark.skipif(not M.edge_backend_available(), reason="pyEdgeEval not installed")
def test_edges_soft_maps_agree_with_pyedgeeval_driver(capsys):
    """Our aggregation (OIS, AP) against pyEdgeEval's own file-less driver. The BSDS
    matcher is randomised (as in the original), so counts move by a pixel or two."""
    from pyEdgeEval.common.binary_label import calculate_metrics
    from pyEdgeEval.common.binary_label.evaluate_boundaries import (
        evaluate_boundaries_threshold_multiple_gts as ev,
    )

    rng = np.random.default_rng(0)
    g = _square()
    preds = [np.clip(g * rng.uniform(0.3, 1, g.shape) + 0.3 * rng.random(g.shape), 0, 1)
             for _ in range(3)]
    gts = [[g, _square(off=1)] for _ in preds]
    ours = M.edge_ods_ois_ap(preds, gts, thresholds=19)
    th = M.bsds_thresholds(19)
    samples = [dict(name=str(i), p=p, g=np.stack(q))
               for i, (p, q) in enumerate(zip(preds, gts, strict=True))]
    _, _, ref = calculate_metrics(lambda s: ev(th, s["p"], s["g"], max_dist=0.0075), 19,
                                  samples, nproc=1)
    assert ours.ods == pytest.approx(ref["ODS_f1"], abs=0.01)
    assert ours.ois == pytest.approx(ref["OIS_f1"], abs=0.01)
    # pyEdgeEval's "AUC" is BSDS's Area_PR on 0:0.01:0.99; ours includes recall 1.0.
    assert ours.ap == pytest.approx(ref["AUC"], abs=0.02)
    assert 0.3 < ours.ap < ours.ods < 1
    assert len(ours.per_image) == 3 and len(ours.curve["precision"]) == 19


# ---------------------------------------------------------------- io


def test_read_image_bit_depths(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    a8 = np.array([[0, 128, 255]], np.uint8)
    a16 = np.array([[0, 32768, 65535]], np.uint16)
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 1] = 255
    iio.imwrite(tmp_path / "a8.png", a8)
    iio.imwrite(tmp_path / "a16.png", a16)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    np.save(tmp_path / "f.npy", np.full((2, 2), 3.5, np.float32))
    x, meta = read_image(tmp_path / "a8.png")
    assert x.shape == (1, 3, 1) and x.dtype == np.float32
    assert x[0, :, 0].tolist() == pytest.approx([0, 128 / 255, 1])
    assert meta.bit_depth == 8 and meta.scale == 255 and meta.channels == 1
    x, meta = read_image(tmp_path / "a16.png")
    assert x[0, :, 0].tolist() == pytest.approx([0, 32768 / 65535, 1])
    assert meta.bit_depth == 16
    x, _ = read_image(tmp_path / "rgb.png")
    assert x.shape == (2, 3, 3) and float(x[..., 1].min()) == 1.0 and float(x[..., 0].max()) == 0
    assert to_tensor(x).shape == (3, 2, 3)
    x, meta = read_image(tmp_path / "f.npy")
    assert float(x.max()) == 3.5 and meta.bit_depth == 0  # float data kept as stored


def test_read_image_errors(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "junk.png")
    np.save(tmp_path / "vol.npy", np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ImageReadError, match="expected one"):
        read_image(tmp_path / "vol.npy")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_match_cpu():
    x = torch.rand(2, 3, 32, 40)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    for fn in (M.psnr, M.ssim):
        cpu = fn(x, y, 1.0)
        gpu = fn(x.cuda(), y.cuda(), 1.0)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu().double(), cpu.double(), atol=1e-4, rtol=0)
    wm, wa = M.weighted_errors(x.cuda(), torch.stack([y, x], 1).cuda(), torch.tensor([1.0, 3.0]))
    cm, ca = M.weighted_errors(x, torch.stack([y, x], 1), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(wm.cpu(), cm, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(wa.cpu(), ca, atol=1e-6, rtol=1e-5)
