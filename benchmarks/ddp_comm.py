"""The communication a distributed ``tvcli train`` step adds, timed alone (gloo
on the CPU), for docs/scaling.md. Run it under torchrun:

    torchrun --standalone --nproc_per_node=2 benchmarks/ddp_comm.py --depth 8 --width 32

Per step, tvcli's DDP path adds: two all-reduces of one number (every rank drew
its batch; every loss is finite), one all-reduce per synchronised batch norm
in the forward pass and one in the backward pass (2C + 1 float64 numbers), and
DDP's all-reduce of every gradient (in buckets). This times each of them on
tensors of the model's real sizes and prints the medians (rank 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.distributed as dist


def _time(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` (every rank runs it together)."""
    times = []
    for _ in range(repeats):
        dist.barrier()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dncnn-tv")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    from tvcli.models.registry import build_model

    model = build_model(args.model, depth=args.depth, width=args.width)
    n_params = sum(p.numel() for p in model.parameters())
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    flag = torch.ones(1)
    grads = torch.randn(n_params)
    stats = torch.randn(2 * args.width + 1, dtype=torch.float64)

    def flag_once():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)

    def stats_once():
        dist.all_reduce(stats)

    def gradients():
        dist.all_reduce(grads)

    # Each collective timed alone (barrier first), then scaled by how often a
    # step runs it: a loop of back-to-back collectives on a loaded machine
    # measures the scheduler more than the communication.
    t_flag = _time(flag_once, args.repeats)
    t_stats = _time(stats_once, args.repeats)
    t_grad = _time(gradients, args.repeats)
    res = {"world_size": dist.get_world_size(), "params": n_params, "batchnorms": n_bn,
           "ms_one_flag": round(1000 * t_flag, 3), "ms_one_bn_stats": round(1000 * t_stats, 3),
           "ms_grad_allreduce_1_bucket": round(1000 * t_grad, 3),
           "ms_per_step_estimate": round(1000 * (2 * t_flag + 2 * n_bn * t_stats + t_grad), 2)}
    if dist.get_rank() == 0:
        print(json.dumps(res))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
