"""Data-parallel training with ``torch.distributed`` (``torchrun``).

``tvcli train`` detects ``torchrun`` from the variables it sets (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT``) and then:

* joins the process group: **gloo** on CPU, **nccl** on CUDA (rank r uses
  ``cuda:LOCAL_RANK``); timeout ``TVCLI_DIST_TIMEOUT`` seconds (default 1800),
  so a rank that died cannot leave the others waiting for ever;
* wraps the model in ``DistributedDataParallel``: every parameter's gradient,
  the TV layers' learned lam included (it is an ``nn.Parameter`` like any
  weight), is averaged over the ranks after each backward pass, so all ranks
  keep identical weights; BatchNorm layers become synchronised batch norms
  (statistics over the global batch), so N ranks x batch B computes what one
  process with batch N x B computes;
* draws training samples from a *sample-indexed* stream: sample g of the run
  (g = 0, 1, 2, ... over the whole run) is drawn from its own generator seeded
  by (seed, g), and at each step rank r takes samples
  ``seen + r*B ... seen + (r+1)*B - 1`` of the global batch. The ranks thus
  see disjoint data with their own seeds, and the data of a step do not depend
  on the world size: resuming a checkpoint on another number of ranks (or one
  process with ``--batch N*B``) continues the same stream;
* lets rank 0 alone write checkpoints, validation, progress, exports and the
  final report; every rank reads the checkpoint when resuming;
* before every backward pass all ranks agree (one tiny all-reduce) that every
  rank has a finite loss and drew its batch without an error; otherwise every
  rank skips that step together, so a bad sample on one rank never leaves the
  others blocked in the gradient all-reduce (too many skips in a row abort the
  run on every rank with one message).

``--batch`` is the **per-rank** batch (the PyTorch DDP convention): the global
batch is ``WORLD_SIZE x --batch``. ``--lr`` is not rescaled: the averaged
gradient is that of the mean loss over the global batch, exactly as in one
process with the global batch, so keep ``--lr`` when you keep the global batch
(``--batch B/N`` on N ranks reproduces a one-process run with ``--batch B``)
and choose it for the global batch when you grow it.

Without ``torchrun`` none of this is active and training is unchanged
(one seeded generator for all the data, as before).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

__all__ = ["DistEnv", "launched", "is_main_process", "init", "shutdown", "prepare_model",
           "wrap_model", "unwrap", "all_ok", "from_rank0", "SyncBatchNorm2d",
           "convert_sync_batchnorm", "sample_seed", "indexed_batch"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: rank of world_size (0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: not distributed

    @property
    def active(self) -> bool:
        """Launched by torchrun (even with one process)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0


def launched(env: dict | None = None) -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher
    that sets ``WORLD_SIZE`` and ``RANK``)."""
    env = os.environ if env is None else env
    return "WORLD_SIZE" in env and "RANK" in env


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a plain process: the one that writes and prints."""
    return int(os.environ.get("RANK", "0")) == 0 if launched() else True


def init(device: str) -> tuple[DistEnv, str]:
    """Joins the process group when launched by torchrun.

    Args:
        device: ``cpu`` or ``cuda`` (``cuda:i`` is replaced by the local rank's GPU).

    Returns:
        ``(env, device)``: the :class:`DistEnv` and the device this rank uses.
    Raises:
        ValueError: CUDA asked for but this rank has no GPU.
    """
    if not launched():
        return DistEnv(), device
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if torch.cuda.device_count() <= local:
            raise ValueError(f"rank {rank}: LOCAL_RANK {local} but only "
                             f"{torch.cuda.device_count()} CUDA device(s) visible")
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("TVCLI_DIST_TIMEOUT", "1800")))
        dist.init_process_group(backend, timeout=timeout)
    return DistEnv(rank, world, local, backend), device


def shutdown(env: DistEnv) -> None:
    """Leaves the process group (no collective: safe after a failure)."""
    if env.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of every rank's input is the
    sum over the ranks of the gradients of the output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        import torch.distributed as dist

        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        import torch.distributed as dist

        g = grad.clone()
        dist.all_reduce(g)
        return g


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are over the batches of all ranks.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``, so
    checkpoints and exported weights do not change. Works with gloo on CPU
    (``nn.SyncBatchNorm`` is GPU-only). One differentiable all-reduce per
    call (sums of x and x^2 in float64, and the count), one more in the
    backward pass: the gradient flows back through the global statistics as
    in ``nn.SyncBatchNorm``. In eval mode (or outside a
    process group) it is a plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _all_reduce
        if x.dim() != 4:
            raise ValueError(f"SyncBatchNorm2d expects (N, C, H, W), got {tuple(x.shape)}")
        c = x.shape[1]
        # One all-reduce for the forward pass (and one for the backward): the sums
        # of x and x^2 and the count, in float64 so that E[x^2] - E[x]^2 does not
        # cancel away the variance.
        xd = x.double()
        count = torch.tensor([float(x.numel() // c)], dtype=torch.float64, device=x.device)
        sums = all_reduce(torch.cat([xd.sum((0, 2, 3)), xd.square().sum((0, 2, 3)), count]))
        n = sums[2 * c]
        mean_d = sums[:c] / n
        var_d = (sums[c:2 * c] / n - mean_d.square()).clamp_min(0)  # biased, to normalise
        mean, var = mean_d.to(x.dtype), var_d.to(x.dtype)
        centred = x - mean.view(1, c, 1, 1)
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / (n - 1)).clamp_min(0) if n > 1 else var.detach()
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y


def convert_sync_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Replaces every BatchNorm2d by a synchronised one (``nn.SyncBatchNorm`` on
    CUDA, :class:`SyncBatchNorm2d` on CPU), keeping parameters and buffers."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats, device=child.weight.device
                                  if child.affine else None)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, cuda)
    return module


def prepare_model(model: nn.Module, env: DistEnv, device: str) -> nn.Module:
    """Synchronised batch norms when more than one rank trains (call it before
    the optimizer is built: the new layers own new Parameter objects)."""
    if not env.active or env.world_size == 1:
        return model
    return convert_sync_batchnorm(model, device.startswith("cuda"))


def wrap_model(model: nn.Module, env: DistEnv, device: str) -> nn.Module:
    """DDP-wraps ``model`` (after :func:`prepare_model`) when more than one rank
    trains; returns it unchanged otherwise. The wrapper keeps the model's
    ``takes_sigma`` flag, which :func:`tvcli.models.inference.apply_model` reads."""
    if not env.active or env.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    cuda = device.startswith("cuda")
    # broadcast_buffers=False: the synchronised batch norms keep the running
    # statistics identical on every rank already, and a buffer broadcast in
    # forward would be one more collective a failing rank could leave hanging.
    import inspect

    no_sync = ({"forward_sync_buffers": False}
               if "forward_sync_buffers" in inspect.signature(DDP).parameters
               else {"broadcast_buffers": False})  # the older name of the same switch
    ddp = DDP(model, device_ids=[env.local_rank] if cuda else None, **no_sync)
    ddp.takes_sigma = getattr(model, "takes_sigma", False)
    return ddp


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


def all_ok(ok: bool, env: DistEnv, device: str) -> bool:
    """True when ``ok`` holds on every rank (one all-reduce of one number; every
    rank must call it at the same point of the step). Without a process group:
    ``ok`` itself."""
    if not env.active or env.world_size == 1:
        return ok
    import torch.distributed as dist

    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0.5)


def from_rank0(value: float, env: DistEnv, device: str) -> float:
    """Rank 0's ``value`` on every rank (one broadcast; every rank must call it at
    the same point). Without a process group: ``value``."""
    if not env.active or env.world_size == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def sample_seed(seed: int, index: int) -> int:
    """The seed of global sample ``index`` of a run seeded ``seed`` (a 63-bit
    mix, so neighbouring samples and neighbouring seeds give unrelated streams)."""
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB)
    x &= (1 << 64) - 1
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 29
    return x & ((1 << 63) - 1)


def indexed_batch(draw: Callable[[torch.Generator], tuple], seed: int, start: int,
                  count: int) -> tuple:
    """Samples ``start ... start + count - 1`` of the sample-indexed stream.

    Args:
        draw: ``draw(generator)`` -> one sample: a tuple of tensors with a
            leading batch axis of 1, or None (e.g. the task's noisy input,
            target and noise level).
        seed: the run's seed.
        start, count: the global indices of the samples wanted.

    Returns:
        The tuple of ``draw``'s tensors concatenated over the samples (batch
        axis ``count``); an entry that is None for every sample stays None; an
        entry that is not a tensor (e.g. the classification task's dropout seed)
        is the first sample's.
    """
    parts = [draw(torch.Generator().manual_seed(sample_seed(seed, g)))
             for g in range(start, start + count)]
    return tuple(None if items[0] is None else
                 torch.cat(items) if isinstance(items[0], torch.Tensor) else items[0]
                 for items in zip(*parts, strict=True))
