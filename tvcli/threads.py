"""A bounded CPU thread count for torch's pool and tvcli's engine.

``torch.set_num_threads(100000)`` is accepted, and the next parallel region then
crashes inside OpenMP (libgomp: a segmentation fault, or "Thread creation
failed" and exit 1 at ~20000), with no message naming the cause. More threads
than a few per CPU never speed up the CPU-bound solvers, so tvcli clamps a
request to :func:`max_threads` and says so in one line.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["THREADS_PER_CPU", "clamp_threads", "default_threads", "max_threads",
           "set_num_threads"]

#: The most threads per usable CPU that tvcli lets torch start.
THREADS_PER_CPU = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_threads(name: str) -> int | None:
    """A thread-count variable as torch reads it (a leading integer > 0), else None."""
    text = os.environ.get(name)
    if text is None:
        return None
    digits = text.strip()
    sign = digits[:1] if digits[:1] in "+-" else ""
    num = ""
    for ch in digits[len(sign):]:
        if not ch.isdigit():
            break
        num += ch
    if not num or sign == "-" or int(num) <= 0:
        return None
    return int(num)


def _cpu_list(text: str) -> list[int]:
    """'0-3,8' (a /sys/devices/system/cpu list) -> [0, 1, 2, 3, 8]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _physical_cores() -> int | None:
    """Physical cores of the present CPUs (distinct package and core ids, as cpuinfo
    counts them on Linux), or None where /sys does not say."""
    base = "/sys/devices/system/cpu"
    try:
        with open(f"{base}/present") as fh:
            cpus = _cpu_list(fh.read())
        cores = set()
        for cpu in cpus:
            with open(f"{base}/cpu{cpu}/topology/physical_package_id") as fh:
                package = fh.read().strip()
            with open(f"{base}/cpu{cpu}/topology/core_id") as fh:
                cores.add((package, fh.read().strip()))
    except (OSError, ValueError):
        return None
    return len(cores) or None


def default_threads() -> int:
    """The intra-op thread count torch starts with, found without importing torch
    (for tvcli's torch-free solver, tvcli._core).

    torch's x86 CPU wheels size their pool as MKL does (``mkl_get_max_threads``):
    MKL_NUM_THREADS, else OMP_NUM_THREADS, else the physical cores, capped at the
    physical cores unless MKL_DYNAMIC is false. (An unparsable value is ignored
    here.) Without /sys topology: the CPU count.
    """
    cores = _physical_cores() or os.cpu_count() or 1
    n = _env_threads("MKL_NUM_THREADS") or _env_threads("OMP_NUM_THREADS") or cores
    dynamic = os.environ.get("MKL_DYNAMIC", "").strip().lower() not in ("false", "0", "no")
    return min(n, cores) if dynamic else n


def max_threads() -> int:
    """The largest thread count tvcli uses: ``THREADS_PER_CPU`` x the usable CPUs."""
    return THREADS_PER_CPU * usable_cpus()


def clamp_threads(n: int) -> tuple[int, str | None]:
    """``(threads to use, None)``, or ``(max_threads(), one-line reason)`` when ``n`` is
    above it. ValueError for ``n < 1`` (or not an integer)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be an integer >= 1, got {n!r}")
    limit = max_threads()
    if n <= limit:
        return n, None
    return limit, (f"{n} threads is more than this machine's sensible maximum of {limit} "
                   f"({THREADS_PER_CPU} x {usable_cpus()} usable CPUs; OpenMP crashes on "
                   f"very large counts); using {limit}")


def set_num_threads(n: int) -> int:
    """Sets torch's intra-op thread count (which tvcli's CPU engine uses) to ``n``,
    clamped to :func:`max_threads` with a ``RuntimeWarning``; returns the count set.

    Use this instead of ``torch.set_num_threads`` when ``n`` comes from a user:
    torch accepts any count, and OpenMP then crashes the process on huge ones.

    Raises:
        ValueError: ``n`` is not an integer >= 1.
    """
    import torch

    used, reason = clamp_threads(n)
    if reason is not None:
        warnings.warn(f"tvcli: {reason}", RuntimeWarning, stacklevel=2)
    torch.set_num_threads(used)
    return used
