"""Benchmarks of tvcli's solvers (timings are measured, never asserted).

* :mod:`tvcli.bench.tv1d` - 1-D prox: paper Table 1 workload and a length sweep
  (``python -m tvcli.bench``, ``make bench``);
* :mod:`tvcli.bench.tv2d` - 2-D prox: 512 x 512 time-to-accuracy and the TV layer
  (``python -m tvcli.bench.tv2d``);
* :mod:`tvcli.bench.suite` - everything behind ``tvcli bench`` (all sections, peers,
  devices, JSON report and plot).

The names below are the 1-D module's, re-exported so that ``from tvcli.bench
import Timing, time_call, machine_info`` keeps working.
"""

from __future__ import annotations

from tvcli.bench.tv1d import (
    Timing,
    bench_sweep,
    bench_table1,
    machine_info,
    main,
    sweep_signal,
    table1_workload,
    time_call,
    uptime_line,
)

__all__ = ["Timing", "time_call", "machine_info", "sweep_signal", "table1_workload",
           "bench_table1", "bench_sweep", "main",
           "uptime_line"]
