"""Paper-mode TV layers against the convolution beside them (issue 28), for
docs/tv2d.md: TVLayer (2-D, K = 4) forward+backward against a 3x3 convolution of
the same width on the same tensor, and the All-CNN-C training step (width 96,
batch 64, Adam) of the TV-Smooth / TV-Sharp arms against the baseline.

Builds are compared side by side in one run: each arm is a worker process with
its own PYTHONPATH (a copy of a tvcli package holding its _C*.so, or this tree)
and environment, and the driver asks the arms for one measurement after another,
rotating their order every round, so load changes hit every arm alike. Every
figure is a median over rounds; ratios are taken within an arm (TV / conv, TV arm
/ baseline), at the same thread count.

    python benchmarks/tv2d_paper_speed.py --arm old=/tmp/old28f --arm new=. \\
        --arm new-scalar=.:TVCLI_PAPER_SIMD=0 --threads 2 1 --rounds 5

``--arm NAME=PATH[:VAR=VALUE...]``: PATH goes first on the worker's PYTHONPATH.
``--ops``: instead, the paper-mode op's forward and backward calls alone on the
layers' N*C planes (ms and minor page faults per call), also with ``sharp=True``
(2 x - prox inside the op; NaN for builds without that option); ``--op-shapes
N,C,H,W ...`` sets those shapes (e.g. the same samples as 32x32, 16x16 and 8x8
planes: ``64,96,32,32 64,384,16,16 64,1536,8,8``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

LAYER_SHAPES = ((64, 96, 32, 32), (32, 64, 40, 40))
TRAIN_MODELS = ("allconv", "allconv-tv-smooth", "allconv-tv-sharp")


# ----------------------------------------------------------------------- worker
class Worker:
    """Runs measurements in this process (one build of tvcli)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.cache: dict[str, Any] = {}

    def _tensor(self, shape: list[int], seed: int) -> Any:
        g = self.torch.Generator().manual_seed(seed)
        # Post-ReLU-like feature maps: the rough, noise-like input of a layer's TV.
        return self.torch.relu(self.torch.randn(*shape, generator=g))

    def layer(self, shape: list[int], mode: str) -> float:
        """ms of one TVLayer(C, mode, '2d', iters=4) forward+backward on (N, C, H, W)."""
        from tvcli.nn import TVLayer

        key = f"layer{shape}{mode}"
        if key not in self.cache:
            layer = TVLayer(shape[1], mode=mode, direction="2d", lam_init=0.05, iters=4)
            x = self._tensor(shape, 0).requires_grad_(True)
            g = self._tensor(shape, 1)
            self.cache[key] = (layer, x, g)
            self._layer_once(layer, x, g)  # warm-up
        return self._layer_once(*self.cache[key])

    def _layer_once(self, layer: Any, x: Any, g: Any) -> float:
        t0 = time.perf_counter()
        y = layer(x)
        y.backward(g)
        ms = 1e3 * (time.perf_counter() - t0)
        x.grad = None
        layer.zero_grad()
        return ms

    def conv(self, shape: list[int]) -> float:
        """ms of one Conv2d(C, C, 3, padding=1) forward+backward (input and weights)."""
        torch = self.torch
        key = f"conv{shape}"
        if key not in self.cache:
            conv = torch.nn.Conv2d(shape[1], shape[1], 3, padding=1)
            x = self._tensor(shape, 0).requires_grad_(True)
            g = self._tensor(shape, 1)
            self.cache[key] = (conv, x, g)
            self._layer_once(conv, x, g)
        return self._layer_once(*self.cache[key])

    def train(self, model: str, batch: int, width: int) -> float:
        """ms of one training step (forward, cross-entropy, backward, Adam) of a
        registered classifier on a random batch of 32x32 images."""
        torch = self.torch
        key = f"train{model}{batch}{width}"
        if key not in self.cache:
            from tvcli.models.registry import build_model

            torch.manual_seed(0)
            net = build_model(model, width=width)
            net.train()
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)
            x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(2))
            t = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(3))
            self.cache[key] = (net, opt, x, t)
            self._step(net, opt, x, t)
        return self._step(*self.cache[key])

    def _step(self, net: Any, opt: Any, x: Any, t: Any) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(net(x), t)
        loss.backward()
        opt.step()
        return 1e3 * (time.perf_counter() - t0)

    def op(self, shape: list[int], which: str) -> dict:
        """ms and minor page faults of one call of the paper-mode op itself
        (``fwd``: tvcli::prox_tv2d_dykstra, K = 4, lam 0.05; ``bwd``: its backward;
        ``fwd-sharp`` / ``bwd-sharp``: the same with sharp=True) on the N*C planes
        of (N, C, H, W), float32."""
        import resource

        torch = self.torch
        ops = torch.ops.tvcli
        key = f"op{shape}"
        if key not in self.cache:
            import tvcli._C  # noqa: F401  (registers the ops)

            b = shape[0] * shape[1]
            x = self._tensor([b, shape[2], shape[3]], 0)
            lam = torch.full((b,), 0.05)
            g = self._tensor([b, shape[2], shape[3]], 1)
            self.cache[key] = (x, lam, g, ops.prox_tv2d_dykstra(x, lam, 4)[1])
        x, lam, g, signs = self.cache[key]
        sharp = which.endswith("-sharp")
        args = (True,) if sharp else ()
        if sharp and "sharp" not in [a.name for a in
                                     ops.prox_tv2d_dykstra.default._schema.arguments]:
            return {"ms": float("nan"), "faults": float("nan")}  # a build without it
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        out = ops.prox_tv2d_dykstra(x, lam, 4, *args) if which.startswith("fwd") else (
            ops.prox_tv2d_dykstra_backward(g, signs, lam, *args))
        ms = 1e3 * (time.perf_counter() - t0)
        del out
        return {"ms": ms, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}

    def run(self, cmd: dict) -> dict:
        self.torch.set_num_threads(int(cmd["threads"]))
        if cmd["task"] == "info":
            import tvcli._C

            return {"ext": tvcli._C.__file__, "torch": self.torch.__version__}
        if cmd["task"] == "layer":
            return {"ms": self.layer(cmd["shape"], cmd["mode"])}
        if cmd["task"] == "conv":
            return {"ms": self.conv(cmd["shape"])}
        if cmd["task"] == "op":
            return self.op(cmd["shape"], cmd["which"])
        if cmd["task"] == "train":
            return {"ms": self.train(cmd["model"], cmd["batch"], cmd["width"])}
        raise ValueError(cmd)


def worker_main() -> None:
    w = Worker()
    for line in sys.stdin:
        print(json.dumps(w.run(json.loads(line))), flush=True)


# ----------------------------------------------------------------------- driver
class Arm:
    """A worker process for one build."""

    def __init__(self, spec: str) -> None:
        name, rest = spec.split("=", 1)
        path, *env_items = rest.split(":")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.abspath(path) + os.pathsep + env.get("PYTHONPATH", "")
        for item in env_items:
            k, v = item.split("=", 1)
            env[k] = v
        self.name = name
        self.env_items = env_items
        # cwd outside the repository: its tvcli/ must not shadow the arm's copy.
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd="/")

    def ask(self, cmd: dict) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"arm {self.name} died")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def items(args: argparse.Namespace) -> list[tuple[str, dict]]:
    out = []
    if args.ops:
        shapes = ([tuple(int(v) for v in sp.split(",")) for sp in args.op_shapes]
                  if args.op_shapes else LAYER_SHAPES)
        for shape in shapes:
            s = "x".join(map(str, shape))
            for which in ("fwd", "bwd", "fwd-sharp", "bwd-sharp"):
                out.append((f"op-{which} {s}", {"task": "op", "shape": list(shape),
                                                 "which": which}))
        return out
    for shape in LAYER_SHAPES:
        s = "x".join(map(str, shape))
        out.append((f"conv3x3 {s}", {"task": "conv", "shape": list(shape)}))
        for mode in ("smooth", "sharp"):
            out.append((f"tv-{mode} {s}", {"task": "layer", "shape": list(shape),
                                           "mode": mode}))
    if not args.no_train:
        for m in TRAIN_MODELS:
            out.append((f"train {m}", {"task": "train", "model": m, "batch": args.batch,
                                       "width": args.width}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arm", action="append", default=[], help="NAME=PATH[:VAR=VALUE...]")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--no-train", action="store_true", help="layers only")
    ap.add_argument("--ops", action="store_true",
                    help="only the paper-mode op's forward and backward calls (ms, page faults)")
    ap.add_argument("--op-shapes", nargs="+", default=None, metavar="N,C,H,W",
                    help="--ops on these (N, C, H, W) instead of the layers' shapes")
    ap.add_argument("--json", help="write every sample here")
    args = ap.parse_args()
    if args.worker:
        worker_main()
        return
    arms = [Arm(s) for s in args.arm]
    for a in arms:
        print(f"# arm {a.name}: {a.ask({'task': 'info', 'threads': 1})} {a.env_items}")
    print("# start", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
          "load", os.getloadavg())
    samples: dict[str, list[float]] = {}
    faults: dict[str, list[float]] = {}
    for threads in args.threads:
        for r in range(args.rounds):
            for label, cmd in items(args):
                order = arms[r % len(arms):] + arms[:r % len(arms)]
                for a in order:
                    got = a.ask({**cmd, "threads": threads})
                    samples.setdefault(f"{a.name}|{threads}|{label}", []).append(got["ms"])
                    if "faults" in got:
                        faults.setdefault(f"{a.name}|{threads}|{label}", []).append(got["faults"])
    print("# end", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
          "load", os.getloadavg())
    for a in arms:
        a.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    print("| arm | threads | what | median ms | ratio |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        for a in arms:
            for label, cmd in items(args):
                k = f"{a.name}|{threads}|{label}"
                if cmd["task"] == "layer":
                    base = med[f"{a.name}|{threads}|conv3x3 {label.split()[1]}"]
                    ratio = f"{med[k] / base:.2f}x conv"
                elif cmd["task"] == "train" and cmd["model"] != "allconv":
                    ratio = f"{med[k] / med[f'{a.name}|{threads}|train allconv']:.2f}x baseline"
                elif k in faults:
                    ratio = f"{statistics.median(faults[k]):.0f} page faults"
                else:
                    ratio = ""
                print(f"| {a.name} | {threads} | {label} | {med[k]:.1f} | {ratio} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"samples": samples, "median": med, "faults": faults}, f, indent=1)


if __name__ == "__main__":
    main()
