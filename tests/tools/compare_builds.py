"""Bit-for-bit comparison of two builds of the compiled engine (CPU).

For refactors of csrc/ that must not change any result. Runs every CPU op and
the CUDA grid emulations on fixed random inputs (rounding-stressing 1-D rows
from tests/fuzz_tv1d.py: ties, long flat runs, scaled rows, merge thresholds;
plus NaN/Inf rows, lam 0 and 1e300, small image batches, and n-D problems: 1-D to
3-D, iso and aniso, colour, weight maps), float32 and float64, forward and backward
(the 2-D paper op with and without sharp), and compares the saved outputs byte for byte
(NaN payloads included).

    python tests/tools/compare_builds.py gen /tmp/cmp/inputs.pt
    # the old build: a copy of the tvcli package holding its _C*.so
    PYTHONPATH=/tmp/old_pkg python tests/tools/compare_builds.py run /tmp/cmp/inputs.pt old.pt
    python tests/tools/compare_builds.py run /tmp/cmp/inputs.pt new.pt   # this tree's build
    python tests/tools/compare_builds.py diff old.pt new.pt              # exit 1 on a difference

Run ``run`` from outside the repository root when PYTHONPATH selects another
copy of tvcli (the root's tvcli/ would shadow it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import torch

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TESTS)  # fuzz_tv1d


def gen(path: str) -> None:
    """Writes the inputs: 1-D rows (x (B, N) float64, lam (B, 1)) and images
    (x (B, H, W) float64, lam (B,))."""
    import fuzz_tv1d as fz

    rng = np.random.default_rng(1234)
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for kind in (fz.kind_ties(rng, 16, b=256), fz.kind_flat(rng, 4, b=256, n=512),
                 fz.kind_scaled(fz.kind_flat(rng, 2, b=128, n=256), rng),
                 fz.kind_threshold(rng, 12, n=96)):
        rows += list(kind)
    for n in (1, 2, 3, 5, 64, 65, 130, 700):
        x = rng.standard_normal((64, n)).round(1)
        lam = rng.choice([0.0, 1e-3, 0.05, 0.3, 1.0, 1e300], size=(64, 1))
        x[3, 0] = np.nan
        x[5, -1] = np.inf
        rows.append((x, lam))
    imgs = []
    for b, h, w in ((1, 1, 1), (3, 1, 7), (5, 7, 1), (8, 16, 16), (40, 9, 13), (2, 64, 50),
                    (1, 130, 97), (33, 32, 32)):
        noise = (rng.random((b, h, w)) < 0.3) * rng.standard_normal((b, h, w)) * 0.05
        x = rng.integers(0, 12, size=(b, h, w)) / 10.0 + noise
        lam = rng.choice([0.0, 0.02, 0.1, 0.4, 3.0], size=(b,))
        if b > 3:
            x[2, 0, 0] = np.nan
        imgs.append((x, lam))
    # n-D problems (tvcli::prox_tv_nd): x (B, C, *S), w (B, 1, *S) or (B, 1, 1...):
    # piecewise-constant plus sparse noise (flat regions: the merged certificate),
    # weight maps with zeros, one-pixel and one-line shapes, a NaN problem.
    nds = []
    for b, c, spatial, wmap in ((1, 1, (1,), False), (3, 1, (37,), True), (2, 3, (1, 9), False),
                                (4, 1, (16, 16), True), (2, 3, (24, 40), False),
                                (1, 3, (64, 48), True), (3, 2, (6, 7, 8), False),
                                (1, 1, (12, 10, 9), True)):
        shape = (b, c, *spatial)
        noise = (rng.random(shape) < 0.3) * rng.standard_normal(shape) * 0.05
        x = rng.integers(0, 12, size=shape) / 10.0 + noise
        if wmap:
            w = rng.choice([0.0, 0.03, 0.1, 0.3], size=(b, 1, *spatial))
        else:
            w = rng.choice([0.02, 0.1, 0.4], size=(b, 1) + (1,) * len(spatial))
        if b > 2:
            x[1].flat[0] = np.nan
        nds.append((x, w))
    torch.save({"rows": rows, "imgs": imgs, "nds": nds}, path)
    print("signals", sum(r[0].shape[0] for r in rows), "images", sum(i[0].shape[0] for i in imgs),
          "n-D problems", sum(v[0].shape[0] for v in nds))


def run(inputs: str, out: str) -> None:
    """Writes every op's outputs on the inputs, keyed by case, with the build
    that `import tvcli._C` finds."""
    import tvcli._C

    from tvcli.tv_implicit import _FLAT_FACTOR, CG_MAX_ITER, CG_RTOL  # prox_tv's constants

    print("using", tvcli._C.__file__)
    ops = torch.ops.tvcli
    torch.set_num_threads(1)
    data = torch.load(inputs, weights_only=False)
    res: dict[str, Any] = {}
    for i, (x, lam) in enumerate(data["rows"]):
        for dt in (torch.float64, torch.float32):
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(dt)
            lt = torch.from_numpy(np.ascontiguousarray(lam)).to(dt)
            g = torch.from_numpy(np.random.default_rng(i).standard_normal(x.shape)).to(dt)
            for solver in ("direct", "pn"):
                y = ops.prox_tv1d(xt, lt, 1, solver)
                res[f"r{i}/{dt}/{solver}"] = y
                res[f"r{i}/{dt}/{solver}/bwd"] = ops.prox_tv1d_backward(g, y, lt, 1)
            res[f"r{i}/{dt}/T"] = ops.prox_tv1d(xt.T.contiguous(), lt.T.contiguous(), 0, "direct")
            res[f"r{i}/{dt}/stats"] = ops.prox_tv1d_pn_stats(xt, lt, 1, 7)
            for k in ("direct", "pn", "direct_device_div"):
                res[f"r{i}/{dt}/emu/{k}"] = ops._emulate_cuda_grid(k, xt, xt, lt, 1, 3, 32)
            y = res[f"r{i}/{dt}/direct"]
            res[f"r{i}/{dt}/emu/bwd"] = ops._emulate_cuda_grid("backward", g, y, lt, 1, 3, 32)
    for i, (x, lam) in enumerate(data["imgs"]):
        for dt in (torch.float64, torch.float32):
            xt = torch.from_numpy(x).to(dt)
            lt = torch.from_numpy(lam).to(dt)
            g = torch.from_numpy(np.random.default_rng(100 + i).standard_normal(x.shape)).to(dt)
            for iters in (1, 4):
                for nt in (1, 2):  # the per-image and the line-parallel CPU paths
                    torch.set_num_threads(nt)
                    y, s = ops.prox_tv2d_dykstra(xt, lt, iters)
                    res[f"i{i}/{dt}/dyk{iters}/t{nt}"] = (y, s)
                    res[f"i{i}/{dt}/dyk{iters}/t{nt}/bwd"] = ops.prox_tv2d_dykstra_backward(
                        g, s, lt)
                    ys, ss = ops.prox_tv2d_dykstra(xt, lt, iters, True)  # sharpening
                    res[f"i{i}/{dt}/dyk{iters}/t{nt}/sharp"] = (ys, ss)
                    res[f"i{i}/{dt}/dyk{iters}/t{nt}/sharp/bwd"] = \
                        ops.prox_tv2d_dykstra_backward(g, ss, lt, True)
                    torch.set_num_threads(1)
                for path in (0, 1):  # fused, lines
                    for fa in (False, True):  # float accumulator for float32
                        key = f"i{i}/{dt}/{iters}/{path}/{fa}"
                        res["emu_dyk/" + key] = ops._emulate_cuda_grid_2d(
                            "dykstra", xt, xt, lt, iters, 2, 32, path, fa)
                        res["emu_dykb/" + key] = ops._emulate_cuda_grid_2d(
                            "dykstra_backward", g, s, lt, iters, 2, 32, path, fa)
            y, info = ops.prox_tv2d_solve(xt, lt, 1e-4, 300, 5, 1e-6)
            res[f"i{i}/{dt}/solve"] = (y, info)
            res[f"i{i}/{dt}/solve/bwd"] = ops.prox_tv2d_region_backward(g, y, lt, 1e-6)
            res[f"i{i}/{dt}/emu_fista"] = ops._emulate_cuda_grid_2d(
                "fista", xt, xt, lt, 0, 2, 32, 0, False, 1e-4, 300)
            res[f"i{i}/{dt}/emu_region"] = ops._emulate_cuda_grid_2d(
                "region_backward", g, y, lt, 0, 2, 32, 2, False, 1e-6, 0)
    for i, (x, w) in enumerate(data.get("nds", [])):
        nd = x.ndim - 2
        for dt in (torch.float64, torch.float32):
            xt, wt = torch.from_numpy(x).to(dt), torch.from_numpy(w).to(dt)
            g = torch.from_numpy(np.random.default_rng(200 + i).standard_normal(x.shape))
            f32 = dt == torch.float32
            for norm in ("iso", "aniso"):
                for nt in (1, 2):  # one problem per thread, and lines split over threads
                    torch.set_num_threads(nt)
                    # the CPU defaults of tvcli.prox_tv (float32: a float32 state to 2e-3
                    # x max(w), adaptive checks, the merged certificate), and plain FISTA
                    key = f"n{i}/{dt}/{norm}/t{nt}"
                    res[key + "/cpu"] = ops.prox_tv_nd(xt, wt, nd, norm, 1e-4, 3000, 5, f32,
                                                       True, True, True, 2e-3 if f32 else 0.0)
                    res[key + "/plain"] = ops.prox_tv_nd(xt, wt, nd, norm, 1e-3, 400, 5, f32,
                                                         True, False, False, 0.0)
                    torch.set_num_threads(1)
                res[f"n{i}/{dt}/{norm}/emu"] = ops._emulate_cuda_grid_nd(
                    xt, wt, nd, norm, 1e-3, 400, 5, False, True, 2, 1, 32, 2)
                y = res[f"n{i}/{dt}/{norm}/t1/cpu"][0].double()
                bound = res[f"n{i}/{dt}/{norm}/t1/cpu"][1][:, 1].contiguous()
                if norm == "aniso" and x.shape[1] > 1:
                    continue  # its backward takes one channel (prox_tv splits them)
                res[f"n{i}/{dt}/{norm}/bwd"] = ops.prox_tv_nd_backward(
                    g, y.nan_to_num(), wt.double(), bound.nan_to_num(), nd, norm, _FLAT_FACTOR,
                    CG_RTOL, CG_MAX_ITER)
    torch.save(res, out)
    print("outputs", len(res))


def _tensors(v: Any) -> list[torch.Tensor]:
    if isinstance(v, (tuple, list)):
        return [t for e in v for t in _tensors(e)]
    return [v]


def diff(a: str, b: str) -> int:
    """Number of output tensors whose bytes differ between two `run` files."""
    ra = torch.load(a, weights_only=False)
    rb = torch.load(b, weights_only=False)
    if ra.keys() != rb.keys():
        print("the files hold different cases")
        return 1
    bad = elements = 0
    for k in ra:
        for ta, tb in zip(_tensors(ra[k]), _tensors(rb[k]), strict=True):
            elements += ta.numel()
            same = (ta.dtype == tb.dtype and ta.shape == tb.shape
                    and ta.contiguous().view(torch.uint8).equal(tb.contiguous().view(torch.uint8)))
            if not same:
                bad += 1
                print("DIFF", k)
    print(f"{len(ra)} outputs, {elements} elements compared; {bad} tensors differ")
    return bad


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "gen" and len(sys.argv) == 3:
        gen(sys.argv[2])
    elif cmd == "run" and len(sys.argv) == 4:
        run(sys.argv[2], sys.argv[3])
    elif cmd == "diff" and len(sys.argv) == 4:
        sys.exit(1 if diff(sys.argv[2], sys.argv[3]) else 0)
    else:
        sys.exit(__doc__)
