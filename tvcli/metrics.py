"""Image-quality and edge-detection metrics used by the paper's experiments.

All image metrics are torch functions that take float tensors on any device,
in one of three layouts: (H, W), (C, H, W) or a batch (N, C, H, W). A batch
gives one value per image (shape (N,)); a single image gives a 0-d tensor.
Values are in the units of the data: ``data_range`` is the distance between
the smallest and largest possible value (1.0 for images read by
:func:`tvcli.io.read_image`, 255 for 8-bit data kept as 0...255).

PSNR
    ``10 log10(data_range^2 / MSE)``, MSE over C, H, W of each image, in dB;
    +inf for identical images.

SSIM
    Wang et al. 2004 with the standard Gaussian window, defined exactly as
    scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R, channel_axis=...)``: local means,
    variances and covariance from a separable Gaussian filter (sigma 1.5,
    truncated at 3.5 sigma: an 11-tap kernel), symmetric ("reflect" in SciPy's
    naming) padding, K1 = 0.01, K2 = 0.03, the SSIM map averaged over each
    channel after cropping (11 - 1) / 2 = 5 pixels at each border, then over
    channels. Images must be at least 11 x 11.

WRMSE / WMAE (Zhu et al. 2019, "A Benchmark for Edge-Preserving Image
Smoothing"; the paper's section 4.5)
    Each image n has K ground truths I(n,k) with annotator votes v(n,k) >= 0.
    The weights are the votes normalised per image, w(n,k) = v(n,k) / sum_k
    v(n,k). As Zhu et al.'s evaluation script computes them, the errors are
    pooled over all pixels of the data set (P(n) = C * H(n) * W(n) values in
    image n)::

        WMAE  =       sum_n sum_k w(n,k) ||pred(n) - I(n,k)||_1   / sum_n P(n)
        WRMSE = sqrt( sum_n sum_k w(n,k) ||pred(n) - I(n,k)||_2^2 / sum_n P(n) )

    so a large image counts more than a small one, and the data-set WRMSE is
    the root of the pooled weighted MSE, not a mean of per-image roots. Per
    image, WMSE(n) = sum_k w(n,k) ||.||^2 / P(n) (:func:`weighted_errors`);
    :func:`pooled_weighted_errors` pools images of any sizes; :func:`wrmse` and
    :func:`wmae` pool a batch (equal sizes, so pooling equals the mean over
    images). The printed formula in Yeh et al. divides by N K H W instead, which
    with weights summing to 1 per image would shrink the result with K; the
    paper's numbers (a few grey levels) are Zhu et al.'s definition. Images
    with fewer ground truths than others are padded with zero weights. Zhu et
    al. and the paper report these in 8-bit grey levels: use data in 0...255
    (or multiply by 255).

Edge ODS / OIS / AP (BSDS protocol, Arbelaez et al. 2011)
    For each threshold t of the edge-probability map, the binary map
    ``pred >= t`` is thinned to one-pixel-wide edges and matched one-to-one to
    every human boundary map by a minimum-cost bipartite assignment, where a
    match is allowed within ``max_dist`` x (image diagonal) pixels (0.0075 for
    BSDS500 / BIPED / MDBD). Recall counts matched ground-truth pixels over all
    ground truths; precision counts predicted pixels matched to any ground
    truth. ODS is the best F-measure of the data-set-wide precision / recall
    (interpolated between thresholds, as the BSDS code does); OIS sums the
    counts at each image's own best threshold; AP is BSDS's "Area_PR": the
    area under the data-set precision-recall curve, precision interpolated
    linearly on the recall grid 0, 0.01, ..., 1 and taken as 0 outside the
    measured recall range.

    Implementation: tvcli's own (:mod:`tvcli.edge_eval`): thinning as MATLAB's
    ``bwmorph(.., 'thin', Inf)``, the matched-pixel counts of the BSDS
    matcher computed exactly as a maximum-cardinality bipartite matching (the
    BSDS cost makes unmatched pixels 100x dearer than any match; only the
    count enters the benchmark), and the F / ODS / OIS / AP formulas of
    ``collect_eval_bdry.m``. ``backend="pyedgeeval"`` uses instead the PyPI
    package ``pyEdgeEval`` (optional extra ``tvcli[edges]``), a Cython port of
    the BSDS C++ matcher (``correspondPixels``, Goldberg's approximate CSA;
    GPL-2.0, never shipped by tvcli): about 50x slower, kept as the reference
    the tests compare with (agreement within 0.005 ODS / OIS / AP on BSDS500
    test images; see docs/edges.md).
"""

from __future__ import annotations

import contextlib
import io as _io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "psnr",
    "mse",
    "ssim",
    "normalize_weights",
    "weighted_errors",
    "pooled_weighted_errors",
    "wrmse",
    "wmae",
    "bsds_thresholds",
    "EdgeCounts",
    "EdgeResult",
    "edge_counts",
    "edge_aggregate",
    "edge_ods_ois_ap",
    "edge_backend_available",
]


# ---------------------------------------------------------------------------
# shapes and dtypes


def _float_dtype(*ts: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half inputs are promoted:
    sums over millions of pixels in float16 would lose the result)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32


def _as_nchw(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    """Returns x as (N, C, H, W) and whether the input was batched (4-D)."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.is_complex():
        raise TypeError(f"{name} must be real, got {x.dtype}")
    if x.dim() == 2:
        return x[None, None], False
    if x.dim() == 3:
        return x[None], False
    if x.dim() == 4:
        return x, True
    raise ValueError(f"{name} must have shape (H, W), (C, H, W) or (N, C, H, W), "
                     f"got {tuple(x.shape)}")


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    p, batched = _as_nchw(pred, "pred")
    t, _ = _as_nchw(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs "
                         f"{tuple(target.shape)}")
    dt = _float_dtype(p, t)
    return p.to(dt), t.to(device=p.device, dtype=dt), batched


def _out(v: torch.Tensor, batched: bool) -> torch.Tensor:
    return v if batched else v[0]


def _check_range(data_range: float) -> float:
    r = float(data_range)
    if not (r > 0 and math.isfinite(r)):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    return r


# ---------------------------------------------------------------------------
# PSNR


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image.

    Args:
        pred, target: float tensors of equal shape (H, W), (C, H, W) or (N, C, H, W).

    Returns:
        (N,) for a batch, else a 0-d tensor; float32 (float64 if an input is),
        in squared data units.
    """
    p, t, batched = _pair(pred, target)
    return _out((p - t).square().flatten(1).mean(1), batched)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    Args:
        pred, target: float tensors of equal shape (H, W), (C, H, W) or
            (N, C, H, W); any device.
        data_range: peak-to-peak range of the data (1.0 for [0, 1] images,
            255 for 8-bit values); always explicit because guessing it from the
            data (as some libraries do) silently changes the number.

    Returns:
        (N,) for a batch, else a 0-d tensor (dB); +inf where pred == target.
    """
    r = _check_range(data_range)
    m = mse(pred, target)
    return 10.0 * torch.log10(r * r / m)


# ---------------------------------------------------------------------------
# SSIM


def _gaussian_kernel(sigma: float, truncate: float, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor:
    """SciPy's ``gaussian_filter`` 1-D kernel: radius int(truncate*sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(device=device, dtype=dtype)


def _symmetric_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-n axis padded by ``pad`` on both sides with
    SciPy's 'reflect' (edge sample repeated: d c b a | a b c d | d c b a)."""
    idx = torch.arange(-pad, n + pad, device=device)
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= n, 2 * n - idx - 1, idx)
    return idx


def _gaussian_blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable blur of (N, C, H, W), same size output, symmetric padding."""
    n, c, h, w = x.shape
    pad = (k.numel() - 1) // 2
    x = x.index_select(2, _symmetric_index(h, pad, x.device))
    x = x.index_select(3, _symmetric_index(w, pad, x.device))
    kh = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    x = torch.nn.functional.conv2d(x, kh, groups=c)
    return torch.nn.functional.conv2d(x, kw, groups=c)


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    *,
    sigma: float = 1.5,
    truncate: float = 3.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity with the standard Gaussian window.

    Same definition as scikit-image's ``structural_similarity(im1, im2,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range, channel_axis=...)`` (see the module docstring).

    Args:
        pred, target: float tensors of equal shape (H, W), (C, H, W) or
            (N, C, H, W) with H, W >= 11; any device.
        data_range: peak-to-peak range of the data (1.0 for [0, 1] images).
        sigma, truncate: the Gaussian window (std in pixels; radius in stds).
        k1, k2: the stabilising constants, C1 = (k1 R)^2, C2 = (k2 R)^2.

    Returns:
        (N,) for a batch, else a 0-d tensor; unitless, at most 1. Computed in
        float64 on the CPU (as scikit-image does) and in the input's float
        dtype (at least float32) on other devices.
    """
    r = _check_range(data_range)
    p, t, batched = _pair(pred, target)
    if p.device.type == "cpu":
        p, t = p.double(), t.double()
    k = _gaussian_kernel(sigma, truncate, p.dtype, p.device)
    win = k.numel()
    h, w = p.shape[-2:]
    if h < win or w < win:
        raise ValueError(f"ssim needs images of at least {win} x {win} pixels "
                         f"(the Gaussian window), got {h} x {w}")
    n, c = p.shape[:2]
    # One grouped convolution for the five local moments.
    stack = torch.cat([p, t, p * p, t * t, p * t], dim=1)
    mu = _gaussian_blur(stack, k).view(n, 5, c, h, w)
    ux, uy, uxx, uyy, uxy = mu.unbind(1)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (k1 * r) ** 2
    c2 = (k2 * r) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    s = s[..., pad:h - pad, pad:w - pad]
    return _out(s.flatten(1).mean(1), batched)


# ---------------------------------------------------------------------------
# WRMSE / WMAE


def normalize_weights(votes: torch.Tensor) -> torch.Tensor:
    """Votes (..., K) >= 0 -> weights summing to 1 along the last axis.

    Raises:
        ValueError: a negative or non-finite vote, or all votes of an image 0.
    """
    v = torch.as_tensor(votes)
    v = v.to(torch.float64) if v.dtype == torch.float64 else v.to(torch.float32)
    if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
        raise ValueError("votes must be finite and >= 0")
    s = v.sum(-1, keepdim=True)
    if bool((s <= 0).any()):
        raise ValueError("every image needs at least one ground truth with a positive vote")
    return v / s


def weighted_errors(
    pred: torch.Tensor, gts: torch.Tensor, votes: torch.Tensor | Sequence[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image weighted MSE and weighted MAE against several ground truths.

    Args:
        pred: (N, C, H, W), (C, H, W) or (H, W) float tensor.
        gts: the K ground truths with a K axis before C: (N, K, C, H, W),
            (K, C, H, W) or (K, H, W) respectively.
        votes: (N, K) or (K,) non-negative votes (normalised here per image);
            None for equal weights. A zero vote excludes a (padding) ground truth.

    Returns:
        ``(wmse, wmae)``: (N,) each for a batch, else 0-d tensors; in squared
        data units and data units.
    """
    pred = torch.as_tensor(pred)
    g0 = torch.as_tensor(gts)
    p, batched = _as_nchw(pred, "pred")
    if g0.dim() != pred.dim() + 1:
        raise ValueError(f"gts must have one more axis (K) than pred: pred {tuple(pred.shape)}, "
                         f"gts {tuple(g0.shape)}")
    g = g0 if batched else (g0[None] if pred.dim() == 3 else g0[None, :, None])
    if g.shape[0] != p.shape[0] or g.shape[2:] != p.shape[1:]:
        raise ValueError(f"gts shape {tuple(g0.shape)} does not match pred shape "
                         f"{tuple(pred.shape)}")
    dt = _float_dtype(p, g)
    p = p.to(dt)
    g = g.to(device=p.device, dtype=dt)
    n, k = g.shape[:2]
    if votes is None:
        w = torch.full((n, k), 1.0 / k, dtype=dt, device=p.device)
    else:
        v = torch.as_tensor(votes, dtype=dt)
        v = v.expand(n, k) if v.dim() == 1 else v
        if v.shape != (n, k):
            raise ValueError(f"votes must have shape ({n}, {k}) or ({k},), got {tuple(v.shape)}")
        w = normalize_weights(v).to(device=p.device, dtype=dt)
    d = (g - p[:, None]).flatten(2)
    wmse_ = (w * d.square().mean(2)).sum(1)
    wmae_ = (w * d.abs().mean(2)).sum(1)
    return _out(wmse_, batched), _out(wmae_, batched)


def pooled_weighted_errors(
    preds: Sequence[torch.Tensor],
    gts: Sequence[torch.Tensor],
    votes: Sequence[torch.Tensor | Sequence[float] | None] | None = None,
) -> tuple[float, float]:
    """Data-set WRMSE and WMAE pooled over all pixels, as Zhu et al.'s script.

    ``WMAE = sum_n sum_k w(n,k) ||pred(n) - I(n,k)||_1 / sum_n P(n)``, WRMSE the
    root of the same with squared errors (see the module docstring); images may
    differ in size and in their number of ground truths.

    Args:
        preds: N predictions, each (C, H, W) or (H, W) float tensor.
        gts: for each prediction its K_n ground truths, (K_n, C, H, W) or (K_n, H, W).
        votes: per image a (K_n,) sequence of votes, or None (equal weights);
            None for equal weights everywhere.

    Returns:
        ``(wrmse, wmae)`` as Python floats in data units (multiply by 255 for
        8-bit grey levels when the data are in [0, 1]). Accumulated in float64.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground-truth sets")
    if votes is not None and len(votes) != len(preds):
        raise ValueError(f"{len(preds)} predictions but {len(votes)} vote lists")
    if not preds:
        raise ValueError("no images to pool")
    wmse_, wmae_, npix = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        p = torch.as_tensor(p)
        m, a = weighted_errors(p.double(), torch.as_tensor(g).double(),
                               None if votes is None else votes[i])
        wmse_.append(float(m))
        wmae_.append(float(a))
        npix.append(p.numel())  # C * H * W: the per-image means back to sums
    return pool_errors(wmse_, wmae_, npix)


def pool_errors(wmse: Sequence[float], wmae: Sequence[float], npix: Sequence[int]
                ) -> tuple[float, float]:
    """Data-set ``(WRMSE, WMAE)`` from per-image weighted MSE / MAE and their value
    counts (C * H * W): the per-image means weighted back to sums over all pixels,
    as Zhu et al.'s script (a large image weighs more than a small one)."""
    count = sum(npix)
    return (math.sqrt(sum(m * n for m, n in zip(wmse, npix, strict=True)) / count),
            sum(a * n for a, n in zip(wmae, npix, strict=True)) / count)


def wrmse(pred: torch.Tensor, gts: torch.Tensor,
          votes: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
    """Data-set WRMSE of a batch, ``sqrt(sum_n WMSE(n) P / (N P))`` (0-d tensor,
    data units); images of a batch share P = C H W, so this is the pooled value.
    Arguments as :func:`weighted_errors`; other sizes: :func:`pooled_weighted_errors`."""
    m, _ = weighted_errors(pred, gts, votes)
    return m.reshape(-1).mean().sqrt()


def wmae(pred: torch.Tensor, gts: torch.Tensor,
         votes: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
    """Data-set WMAE of a batch (0-d tensor, data units), pooled as :func:`wrmse`.
    Arguments as :func:`weighted_errors`; other sizes: :func:`pooled_weighted_errors`."""
    _, a = weighted_errors(pred, gts, votes)
    return a.reshape(-1).mean()


# ---------------------------------------------------------------------------
# Edge detection: ODS / OIS / AP


def edge_backend_available() -> bool:
    """Whether the reference backend pyEdgeEval (with OpenCV) can be imported
    (tvcli's own backend needs only SciPy)."""
    try:
        _pyedgeeval()
        return True
    except ImportError:
        return False


def _pyedgeeval():
    # pyEdgeEval prints a warning to stdout on import (about .mat files), which
    # would corrupt `--json` output: swallow it.
    with contextlib.redirect_stdout(_io.StringIO()):
        from pyEdgeEval.common.binary_label.evaluate_boundaries import (  # type: ignore
            evaluate_boundaries_threshold_multiple_gts,
        )
    return evaluate_boundaries_threshold_multiple_gts


def _rec_prec_f(count_r, sum_r, count_p, sum_p):
    """BSDS recall, precision and F (0 where undefined), element-wise."""
    count_r, sum_r, count_p, sum_p = (np.asarray(a, np.float64)
                                      for a in (count_r, sum_r, count_p, sum_p))
    rec = count_r / (sum_r + (sum_r == 0))
    prec = count_p / (sum_p + (sum_p == 0))
    den = prec + rec
    return rec, prec, 2.0 * prec * rec / (den + (den == 0))


def _interpolated_max_f(th: np.ndarray, rec: np.ndarray, prec: np.ndarray):
    """BSDS ``maxF``: the best F along straight lines between consecutive
    thresholds' (t, R, P), 101 points per segment; the first maximum wins.
    Returns (t, R, P, F)."""
    th, rec, prec = (np.asarray(a, np.float64) for a in (th, rec, prec))
    if th.size == 1:
        return th[0], rec[0], prec[0], _rec_prec_f(rec[0], 1, prec[0], 1)[2]
    d = np.linspace(0.0, 1.0, 101)[None, :]
    t = th[1:, None] * d + th[:-1, None] * (1 - d)
    r = rec[1:, None] * d + rec[:-1, None] * (1 - d)
    p = prec[1:, None] * d + prec[:-1, None] * (1 - d)
    den = p + r
    f = 2 * p * r / (den + (den == 0))
    f0 = _rec_prec_f(rec[0], 1, prec[0], 1)[2]
    k = int(np.argmax(f))
    if not f.flat[k] > f0:
        return th[0], rec[0], prec[0], f0
    return t.flat[k], r.flat[k], p.flat[k], f.flat[k]


def bsds_thresholds(n: int = 99) -> np.ndarray:
    """The BSDS benchmark's ``n`` thresholds, evenly spaced strictly inside (0, 1)."""
    if n < 1:
        raise ValueError("need at least one threshold")
    return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)


@dataclass
class EdgeCounts:
    """Per-threshold match counts of one image (arrays of shape (T,)):
    matched / total ground-truth pixels (recall) and matched / total predicted
    pixels (precision)."""

    count_r: np.ndarray
    sum_r: np.ndarray
    count_p: np.ndarray
    sum_p: np.ndarray


@dataclass
class EdgeResult:
    """Data-set edge metrics (all unitless in [0, 1]).

    ``per_image`` holds for each image its best threshold and the precision,
    recall and F at it; ``curve`` the data-set precision / recall / F at every
    threshold."""

    ods: float
    ois: float
    ap: float
    ods_threshold: float
    ods_precision: float
    ods_recall: float
    per_image: list[dict] = field(default_factory=list)
    curve: dict = field(default_factory=dict)


def edge_counts(
    pred: np.ndarray | torch.Tensor,
    gts: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
    thresholds: int | np.ndarray = 99,
    max_dist: float = 0.0075,
    thin: bool = True,
    backend: str = "tvcli",
) -> EdgeCounts:
    """Matches one edge map to its human boundary maps at every threshold.

    Args:
        pred: (H, W) edge strength in [0, 1] (float; higher = more edge).
        gts: K boundary maps (K, H, W) or a list of (H, W); non-zero = boundary.
        thresholds: a count (BSDS spacing, see :func:`bsds_thresholds`) or an
            explicit 1-D array; ``pred >= t`` is the binary map at t.
        max_dist: match tolerance as a fraction of the image diagonal.
        thin: thin each binary map to 1-pixel edges first (BSDS default).
        backend: ``"tvcli"`` (:mod:`tvcli.edge_eval`) or ``"pyedgeeval"``
            (the reference port of the BSDS code; slow).

    Returns:
        :class:`EdgeCounts` with arrays of shape (T,).

    Raises:
        ImportError: backend pyedgeeval without pyEdgeEval installed.
        ValueError: shapes differ, unknown backend.
    """
    if backend not in ("tvcli", "pyedgeeval"):
        raise ValueError(f"unknown edge backend {backend!r} (tvcli or pyedgeeval)")
    p = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred,
                   dtype=np.float64)
    if p.ndim == 3 and p.shape[-1] == 1:
        p = p[..., 0]
    g = [np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x) for x in gts]
    g = [x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x for x in g]
    if p.ndim != 2:
        raise ValueError(f"edge map must be (H, W), got {p.shape}")
    if not g:
        raise ValueError("need at least one ground-truth boundary map")
    for x in g:
        if x.shape != p.shape:
            raise ValueError(f"ground truth {x.shape} and edge map {p.shape} sizes differ")
    th = bsds_thresholds(thresholds) if isinstance(thresholds, int) else np.asarray(thresholds)
    gts_bool = [x > 0 for x in g]
    if backend == "pyedgeeval":
        cr, sr, cp, sp = _pyedgeeval()(th, p, np.stack(gts_bool), max_dist=max_dist,
                                       apply_thinning=thin)
    else:
        from tvcli.edge_eval import edge_counts_fast

        cr, sr, cp, sp = edge_counts_fast(p, gts_bool, th, max_dist, thin)
    return EdgeCounts(np.asarray(cr, float), np.asarray(sr, float), np.asarray(cp, float),
                      np.asarray(sp, float))


def edge_aggregate(counts: Sequence[EdgeCounts], thresholds: int | np.ndarray = 99) -> EdgeResult:
    """ODS, OIS and AP over a data set from per-image :class:`EdgeCounts`
    (BSDS ``collect_eval_bdry.m``; see the module docstring)."""
    prf, interp_max = _rec_prec_f, _interpolated_max_f
    th = bsds_thresholds(thresholds) if isinstance(thresholds, int) else np.asarray(thresholds)
    if not counts:
        raise ValueError("no images to aggregate")
    tot = [np.zeros_like(th, dtype=float) for _ in range(4)]
    best = np.zeros(4)
    per_image = []
    for c in counts:
        arrs = (c.count_r, c.sum_r, c.count_p, c.sum_p)
        for acc, a in zip(tot, arrs, strict=True):
            acc += a
        r, p, f = prf(*arrs)
        i = int(np.argmax(f))  # first best threshold, as np.argmax / MATLAB max
        best += [a[i] for a in arrs]
        per_image.append(dict(threshold=float(th[i]), precision=float(p[i]),
                              recall=float(r[i]), f=float(f[i])))
    rec, prec, f1 = prf(*tot)
    t_ods, r_ods, p_ods, f_ods = interp_max(th, rec, prec)
    _, _, f_ois = prf(*(float(b) for b in best))
    # Area_PR: precision at unique recalls, linear in recall on 0:0.01:1, 0 outside.
    ru, iu = np.unique(rec, return_index=True)
    if ru.size > 1:
        pi = np.interp(np.linspace(0.0, 1.0, 101), ru, prec[iu], left=0.0, right=0.0)
        ap = float(pi.sum() * 0.01)
    else:
        ap = 0.0
    curve = dict(threshold=th.tolist(), precision=prec.tolist(), recall=rec.tolist(),
                 f=f1.tolist())
    return EdgeResult(float(f_ods), float(f_ois), ap, float(t_ods), float(p_ods), float(r_ods),
                      per_image, curve)


def edge_ods_ois_ap(
    preds: Sequence[np.ndarray | torch.Tensor],
    gts: Sequence[Sequence[np.ndarray] | np.ndarray],
    thresholds: int | np.ndarray = 99,
    max_dist: float = 0.0075,
    thin: bool = True,
    backend: str = "tvcli",
) -> EdgeResult:
    """ODS / OIS / AP of a data set.

    Args:
        preds: N edge maps, each (H_n, W_n) float in [0, 1].
        gts: for each image, its K_n boundary maps ((K_n, H_n, W_n) or a list).
        thresholds, max_dist, thin, backend: as :func:`edge_counts`.

    Returns:
        :class:`EdgeResult`.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} edge maps but {len(gts)} ground-truth sets")
    return edge_aggregate([edge_counts(p, g, thresholds, max_dist, thin, backend)
                           for p, g in zip(preds, gts, strict=True)], thresholds)
