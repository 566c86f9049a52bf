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

__all__ = ["THREADS_PER_CPU", "clamp_threads", "max_threads", "set_num_threads"]

#: The most threads per usable CPU that tvcli lets torch start.
THREADS_PER_CPU = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
