"""Exactness fuzz harness for the 1-D TV prox (issue 11, part 1).

Generates batches of 1-D signals of the kinds that stress rounding in an exact
solver, solves them with :func:`tvcli.prox_tv1d`, and checks every result

* against the optimality (KKT) conditions, in float64 numpy code written for
  this harness: with ``u = cumsum(x - y)``, ``u[N-1] = 0``, ``|u[n]| <= lam``,
  and ``u[n] = -lam * sign(y[n+1] - y[n])`` wherever ``y`` jumps. The residual is
  the largest violation divided by ``max|x|`` (and by ``lam`` where that is
  larger, so that huge ``lam`` is measured on its own scale);
* against an independent float64 solver on a deterministic subsample: the taut
  string of ``tests/reference.py`` (pure Python, shares no code with csrc/).

Signal kinds (each a generator yielding ``(x, lam)`` with x float64 (B, N) and
lam float64 (B, 1)):

``dykstra`` / ``fista``  rows and columns fed to the 1-D prox inside K proximal-
    Dykstra iterations (paper Alg. 1) and inside FISTA on the dual (the
    converged 2-D mode) of real photos, at several lam;
``quant8`` / ``quant16``  photo rows quantised to k/255 and k/65535;
``flat``  long flat runs (steps) plus noise of 1e-9 .. 1e-15 relative size;
``ties``  short rows of few distinct non-dyadic values (tenths, hundredths)
    with lam a small multiple of their spacing, and runs of k/255; exact and
    one-ulp-perturbed: exact ties of segment values and dual sums;
``threshold``  lam just above / below the values where two segments of the
    solution merge (found by bisection on the solver's own segment count and
    then perturbed by a few ulps);
``scale``  all of the above scaled by 1e-150 .. 1e150.

Photos: ``examples/images`` (in the repo) and, when present,
``../shared/data/bsds500/images`` relative to the repo root.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

import tvcli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PHOTOS = os.path.join(REPO, "..", "shared", "data", "bsds500", "images")
EXAMPLE_PHOTOS = os.path.join(REPO, "examples", "images")

F64_TOL = 1e-12  # KKT residual bound relative to max|x| (float64 storage)
F32_TOL = 1e-6  # the same for float32 storage (results rounded to float32)


# --------------------------------------------------------------------------- checks


def kkt_residual(x: np.ndarray, y: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Largest violation of the optimality conditions of ``y = prox(x, lam)``.

    x, y: float64 (B, N); lam: float64 (B, 1) > 0. Returns float64 (B,), the
    violation relative to ``max(max|x|, lam)`` of each row. Jumps are read from
    ``y`` exactly (any nonzero difference is a jump), so a solver must store
    segments as exactly constant runs to pass - as the exact backward needs;
    a jump with the wrong dual counts with the smaller of its dual violation
    and its own size (a tie split by rounding is not an error beyond its size).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64).reshape(-1, 1)
    r = _kkt(x, y, lam, np.float64)
    # Rows near the bound again with the running sums in extended precision
    # (x86: 64-bit mantissa): in float64 the check's own rounding (~N eps
    # sum|x|) reaches 1e-12 on 512 samples and would be blamed on the solver
    # (the taut string "failed" it too). 4x slower, so only where it matters.
    near = np.flatnonzero(r > 2e-13)
    if near.size:
        r[near] = _kkt(x[near], y[near], lam[near], np.longdouble)
    return r


def _kkt(x: np.ndarray, y: np.ndarray, lam: np.ndarray, acc: type) -> np.ndarray:
    u = np.cumsum(x.astype(acc) - y.astype(acc), axis=1)
    end = np.abs(u[:, -1])
    inner = u[:, :-1]
    box = np.max(np.abs(inner) - lam, axis=1, initial=0.0)
    dy = y[:, 1:] - y[:, :-1]
    d = np.sign(dy)
    # A jump must carry the dual to the bound on the side that its sign says;
    # a jump no larger than that violation (two segments whose values tie in
    # exact arithmetic and differ by rounding) counts only with its size.
    jump = np.where(d != 0, np.minimum(np.abs(inner + lam * d), np.abs(dy)), 0.0)
    jump = np.max(jump, axis=1, initial=0.0)
    end, box, jump = (np.asarray(v, dtype=np.float64) for v in (end, box, jump))
    scale = np.maximum(np.max(np.abs(x), axis=1), lam[:, 0])
    scale = np.where(scale > 0, scale, 1.0)
    return np.maximum(np.maximum(end, box), jump) / scale


def independent_prox(x: np.ndarray, lam: float) -> np.ndarray:
    """The taut string of tests/reference.py on one float64 signal (N,)."""
    from reference import taut_string

    return np.asarray(taut_string(x.tolist(), float(lam)), dtype=np.float64)


# --------------------------------------------------------------------------- photos


def photo_paths(limit: int | None = None) -> list[str]:
    """Example images, then BSDS500 photos when ../shared/data is present."""
    paths = sorted(glob.glob(os.path.join(EXAMPLE_PHOTOS, "*.png")))
    paths = [p for p in paths if "noisy" not in os.path.basename(p)]
    shared = sorted(glob.glob(os.path.join(SHARED_PHOTOS, "*", "*.jpg")))
    paths += shared
    return paths[:limit] if limit else paths


def load_gray(path: str, max_side: int = 512) -> np.ndarray:
    """A photo as float64 gray (H, W) in [0, 1], cropped to at most max_side."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    return a[:max_side, :max_side]


def load_rgb8(path: str, max_side: int = 512) -> np.ndarray:
    """A photo as uint8 (H, W, C), cropped."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return a[:max_side, :max_side]


def _prox(x: np.ndarray, lam: np.ndarray, dim: int) -> np.ndarray:
    return tvcli.prox_tv1d(torch.from_numpy(x), torch.from_numpy(lam), dim=dim).numpy()


def dykstra_inputs(img: np.ndarray, lam: float, iters: int) -> Iterator[tuple[np.ndarray, float]]:
    """The rows, then the columns, that K proximal-Dykstra iterations (paper
    Alg. 1, float64) hand to the 1-D prox, one iteration at a time.
    Yields (signals (B, N) float64, lam)."""
    y = img
    p = np.zeros_like(img)
    q = np.zeros_like(img)
    lr = np.full((img.shape[0], 1), lam)
    lc = np.full((1, img.shape[1]), lam)
    for _ in range(iters):
        a = y + p
        yield a, lam
        z = _prox(a, lr, 1)
        p = a - z
        b = z + q
        yield np.ascontiguousarray(b.T), lam
        y = _prox(b, lc, 0)
        q = b - y


def fista_inputs(img: np.ndarray, lam: float, iters: int) -> Iterator[tuple[np.ndarray, float]]:
    """The rows and columns handed to the 1-D prox by FISTA on the dual
    (Chambolle & Pock 2015; tvcli's converged 2-D mode, tvcli/prox2d.py)."""
    v = np.zeros_like(img)
    w = np.zeros_like(img)
    t = 1.0
    lr = np.full((img.shape[0], 1), lam)
    lc = np.full((1, img.shape[1]), lam)
    for _ in range(iters):
        a = img - w
        yield a, lam
        z = w + _prox(a, lr, 1)
        yield np.ascontiguousarray(z.T), lam
        y = _prox(z, lc, 0)
        vn = z - y
        tn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        w = vn + ((t - 1.0) / tn) * (vn - v)
        v, t = vn, tn


# --------------------------------------------------------------------------- kinds

Batch = tuple[np.ndarray, np.ndarray]  # x (B, N) float64, lam (B, 1) float64


def _lam_col(b: int, lam: float | np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(lam, dtype=np.float64).reshape(-1, 1), (b, 1)).copy()


def kind_iterates(paths: list[str], lams: list[float], iters: int, method: str,
                  max_side: int = 512) -> Iterator[Batch]:
    gen = dykstra_inputs if method == "dykstra" else fista_inputs
    for path in paths:
        img = load_gray(path, max_side)
        for lam in lams:
            for sig, lm in gen(img, lam, iters):
                yield sig, _lam_col(sig.shape[0], lm)


def kind_quantised(paths: list[str], levels: int, lams: list[float], rng: np.random.Generator,
                   max_side: int = 512) -> Iterator[Batch]:
    """Photo rows and columns (each RGB channel) as k / levels, levels 255 or
    65535 (16-bit values made from 8-bit photos plus a random low byte)."""
    for path in paths:
        a = load_rgb8(path, max_side).astype(np.float64)
        if levels == 65535:
            a = a * 257.0 + rng.integers(0, 257, size=a.shape)
            a = np.minimum(a, 65535.0)
        a = a / float(levels)
        for c in range(a.shape[2]):
            ch = a[:, :, c]
            for sig in (ch, np.ascontiguousarray(ch.T)):
                lam = rng.choice(lams, size=(sig.shape[0], 1))
                yield sig.copy(), lam.astype(np.float64)


def kind_flat(rng: np.random.Generator, batches: int, b: int = 512,
              n: int = 512) -> Iterator[Batch]:
    """Piecewise-constant signals with long runs plus tiny noise."""
    for _ in range(batches):
        nseg = rng.integers(1, 12)
        cuts = np.sort(rng.choice(np.arange(1, n), size=(b, nseg), replace=True), axis=1)
        levels = rng.uniform(0, 1, size=(b, nseg + 1))
        idx = (np.arange(n)[None, :, None] >= cuts[:, None, :]).sum(axis=2)
        x = np.take_along_axis(levels, idx, axis=1)
        noise = 10.0 ** rng.uniform(-15, -9, size=(b, 1))
        x = x + noise * rng.standard_normal((b, n))
        step = np.abs(np.diff(levels, axis=1)).mean(axis=1, keepdims=True)
        lam = step * 10.0 ** rng.uniform(-3, 1.5, size=(b, 1))
        yield x, lam


def kind_ties(rng: np.random.Generator, batches: int, b: int = 512) -> Iterator[Batch]:
    """Exact and near ties: few distinct non-dyadic values, lam a small multiple
    of their spacing, so that segment values and dual sums tie in exact
    arithmetic and rounding decides - the case that broke the published Condat
    sweep at the right boundary (short rows of tenths at lam 0.1-0.5 hit it
    about 70 times per 10^6 rows). Modes, in turn: tenths 0..0.6 at lam
    0.1..0.5, n 3..24; tenths 0..0.9 at lam 0.1..2, n 3..40; hundredths 0..0.2
    at lam 0.01..0.1, n 3..24; runs of k/255, n 41..300. Every other round of
    four adds one-ulp perturbations (near-ties)."""
    for t in range(batches):
        mode = t % 4
        if mode == 0:
            n = int(rng.integers(3, 25))
            x = rng.integers(0, 7, size=(b, n)) / 10.0
            lam = rng.integers(1, 6, size=(b, 1)) / 10.0
        elif mode == 1:
            n = int(rng.integers(3, 41))
            x = rng.integers(0, 10, size=(b, n)) / 10.0
            lam = rng.integers(1, 21, size=(b, 1)) / 10.0
        elif mode == 2:
            n = int(rng.integers(3, 25))
            x = rng.integers(0, 21, size=(b, n)) / 100.0
            lam = rng.integers(1, 11, size=(b, 1)) / 100.0
        else:  # runs of repeated k/255 values
            n = int(rng.integers(41, 301))
            x = rng.integers(0, 256, size=(b, n)) / 255.0
            keep = rng.random((b, n)) < 0.75
            keep[:, 0] = False
            idx = np.where(keep, 0, np.arange(n)[None, :])
            idx = np.maximum.accumulate(idx, axis=1)
            x = np.take_along_axis(x, idx, axis=1)
            lam = rng.integers(1, 51, size=(b, 1)) / 255.0
        if (t // 4) % 2:
            x = x + np.spacing(np.maximum(np.abs(x), 1e-300)) * rng.integers(-2, 3, size=(b, n))
        yield x, lam


def merge_threshold(x: np.ndarray, n_seg_target: int, lo: float, hi: float) -> float:
    """Bisection on lam for the point where the solution of one signal x (N,)
    drops below ``n_seg_target`` segments."""
    xt = torch.from_numpy(x[None, :])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        y = tvcli.prox_tv1d(xt, mid).numpy()[0]
        nseg = 1 + int(np.count_nonzero(np.diff(y)))
        if nseg >= n_seg_target:
            lo = mid
        else:
            hi = mid
    return hi


def kind_threshold(rng: np.random.Generator, signals: int, n: int = 96) -> Iterator[Batch]:
    """lam within a few ulps (and within 1e-12 relative) of a merge threshold."""
    for _ in range(signals):
        x = np.cumsum(rng.standard_normal(n)) if rng.random() < 0.5 else rng.uniform(0, 1, n)
        if rng.random() < 0.5:
            x = np.round(x * 255) / 255
        lam_hi = 0.25 * n * (x.max() - x.min())
        y = tvcli.prox_tv1d(torch.from_numpy(x[None, :]), lam_hi / 50).numpy()[0]
        nseg = 1 + int(np.count_nonzero(np.diff(y)))
        t = merge_threshold(x, max(2, nseg // 2), lam_hi / 1000, lam_hi)
        offs = np.concatenate([np.arange(-8, 9), [-1e4, -1e2, 1e2, 1e4]])
        lam = np.array([t + o * np.spacing(t) for o in offs]
                       + [t * (1 + s) for s in (-1e-12, 1e-12)])
        yield np.repeat(x[None, :], lam.size, axis=0), lam.reshape(-1, 1)


def kind_scaled(source: Iterator[Batch], rng: np.random.Generator) -> Iterator[Batch]:
    """Every batch of ``source`` scaled by a huge or tiny power of ten."""
    for x, lam in source:
        s = 10.0 ** rng.choice([-150, -30, -8, 8, 30, 150])
        yield x * s, lam * s


# --------------------------------------------------------------------------- runner


@dataclass
class KindStats:
    signals: int = 0
    samples: int = 0
    kkt_max: float = 0.0
    kkt_fail: int = 0
    ref_checked: int = 0
    ref_max: float = 0.0
    ref_fail: int = 0
    failures: list = field(default_factory=list)  # (x, lam, residual) of the worst few


def check_batch(stats: KindStats, x: np.ndarray, lam: np.ndarray, *, solver: str,
                dtype: torch.dtype, ref_every: int, rng: np.random.Generator,
                keep: int = 5) -> None:
    """Solve one batch and fold its residuals into stats. float32 skips batches
    whose magnitudes float32 cannot hold (the "scale" kind's 1e+-150)."""
    if dtype == torch.float32:
        mag = np.abs(x).max(initial=0.0)
        if not 1e-30 < mag < 1e30:
            return
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
    lt = torch.from_numpy(np.ascontiguousarray(lam)).to(dtype)
    y = tvcli.prox_tv1d(xt, lt, solver=solver).double().numpy()
    xs = xt.double().numpy()  # the signal as stored (rounded for float32)
    ls = lt.double().numpy()
    tol = F64_TOL if dtype == torch.float64 else F32_TOL
    if dtype == torch.float64:
        r = kkt_residual(xs, y, ls)
    else:
        # float32 output: the exact prox rounded to float32 breaks exact segment
        # constancy only by rounding; compare with the float64 solution instead.
        y64 = tvcli.prox_tv1d(torch.from_numpy(xs), torch.from_numpy(ls), solver="direct").numpy()
        scale = np.maximum(np.abs(xs).max(axis=1), ls[:, 0])
        r = np.abs(y - y64).max(axis=1) / np.where(scale > 0, scale, 1.0)
        r = np.maximum(r, kkt_residual(xs, y64, ls))
    stats.signals += x.shape[0]
    stats.samples += x.size
    stats.kkt_max = max(stats.kkt_max, float(r.max(initial=0.0)))
    bad = np.flatnonzero(~(r <= tol))
    stats.kkt_fail += bad.size
    for i in bad[:keep]:
        if len(stats.failures) < keep:
            stats.failures.append((xs[i].copy(), float(ls[i, 0]), float(r[i])))
    if ref_every > 0:
        picks = [i for i in range(x.shape[0]) if rng.random() < 1.0 / ref_every]
        for i in picks:
            ref = independent_prox(xs[i], ls[i, 0])
            scale = max(float(np.abs(xs[i]).max()), float(ls[i, 0])) or 1.0
            err = float(np.abs(ref - y[i]).max()) / scale
            stats.ref_checked += 1
            stats.ref_max = max(stats.ref_max, err)
            # The taut string accumulates its own rounding (cumulative sums over N).
            if not err <= max(tol, 1e-10):
                stats.ref_fail += 1


def kinds(scale: str, rng: np.random.Generator) -> dict[str, Callable[[], Iterator[Batch]]]:
    """Signal generators, sized for ``scale`` = "quick" (CI) or "full" (>= 1e6)."""
    full = scale == "full"
    # Full: ~1.2e6 signals per solver/dtype. Iterates of 12 photos (3 example
    # images + 9 BSDS500 when present) x 4 lam x 6 iterations (rows and
    # columns), quantised rows of 40 photos.
    photos_it = photo_paths(limit=12) if full else photo_paths(limit=2)
    photos_q = photo_paths(limit=40) if full else photo_paths(limit=2)
    side = 512 if full else 128
    lams = [0.01, 0.03, 0.1, 0.3] if full else [0.03, 0.1]
    iters = 6 if full else 3

    def scaled() -> Iterator[Batch]:
        base = kind_flat(rng, 200 if full else 2, b=256, n=256)
        return kind_scaled(base, rng)

    return {
        "dykstra": lambda: kind_iterates(photos_it, lams, iters, "dykstra", side),
        "fista": lambda: kind_iterates(photos_it, lams, iters, "fista", side),
        "quant8": lambda: kind_quantised(photos_q, 255, [0.5 / 255, 2 / 255, 0.02, 0.1, 1.0], rng,
                                         side),
        "quant16": lambda: kind_quantised(photos_q, 65535, [1 / 65535, 0.003, 0.05, 1.0], rng,
                                          side),
        "flat": lambda: kind_flat(rng, 400 if full else 3),
        "ties": lambda: kind_ties(rng, 600 if full else 8),
        "threshold": lambda: kind_threshold(rng, 2000 if full else 10),
        "scale": scaled,
    }
