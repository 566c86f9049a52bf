"""Sharded batches (``--shard K/N``) and machine-readable run summaries (``--summary``).

A cluster scheduler starts N copies of one command (a SLURM job array, a
Kubernetes indexed Job); each copy plans the *whole* batch exactly as an
unsharded run would (so every conflict check sees every input and every
output), then keeps only its own share of the jobs and runs them.

Which shard owns a job
    ``shard_of(key, N) = int.from_bytes(sha256(key)[:8]) % N`` where ``key`` is
    the file's path relative to the folder given on the command line, without
    extension, with ``/`` separators (a file given directly: its name without
    extension; ``tvcli eval``: the name it pairs by, the same). The owner depends only
    on that key and N: not on the order in which the file system lists files,
    not on which other files exist, not on the working directory or the mount
    point of the shared folder. Consequences:

    * the shards' job sets are disjoint and together are the unsharded batch, so
      no two shards write the same output (each output belongs to one job);
    * a shard restarted after a kill (with ``--skip-existing``) owns the same
      files as before, even if files were added meanwhile;
    * the split is balanced only statistically: with n files a shard gets
      n / N +- about sqrt(n / N) of them (exact balance would need a
      contiguous split of the sorted list, whose boundaries move when a file is
      added, which could hand one file to two shards of a rerun).

Shard numbers are 0-based: ``--shard 0/4`` ... ``--shard 3/4``. ``--shard auto``
takes them from the scheduler's environment, first match wins:

    ========================== ==========================================
    SLURM job array            ``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN``
                               of ``SLURM_ARRAY_TASK_COUNT``
    Kubernetes indexed Job     ``JOB_COMPLETION_INDEX`` of ``TVCLI_SHARD_COUNT``
                               (set it to the Job's ``completions``: Kubernetes
                               does not export the count)
    anything else              ``TVCLI_SHARD_INDEX`` of ``TVCLI_SHARD_COUNT``
    ========================== ==========================================

Summaries
    ``--summary FILE.json`` writes one JSON object when the run ends (also when
    it is interrupted by Ctrl-C or SIGTERM, with ``"interrupted": true``):
    counts, every processed / skipped / failed input with the reason, and
    timings. ``{index}`` and ``{count}`` in FILE are replaced by the shard
    numbers, so one command line serves every array task
    (``--summary logs/smooth-{index}-of-{count}.json``). The file is written
    atomically and replaced on every run (it reports that run).
"""

from __future__ import annotations

import hashlib
import os
import signal
import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["Shard", "parse_shard", "shard_of", "job_key", "owner_filter", "select_jobs",
           "summary_path", "check_summary_path", "write_summary", "write_json_atomic",
           "sigterm_as_interrupt", "run_batch"]

SHARD_HELP = ("Process only shard K of N (0 <= K < N) of the batch: a fixed split by "
              "each file's relative path, independent of listing order; 'auto' reads "
              "SLURM_ARRAY_TASK_ID/COUNT, JOB_COMPLETION_INDEX + TVCLI_SHARD_COUNT, or "
              "TVCLI_SHARD_INDEX/COUNT. See docs/scaling.md.")
SUMMARY_HELP = ("Write a JSON summary of this run (processed, skipped, failed with reasons, "
                "timings) to FILE; {index} and {count} in FILE become the shard numbers.")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based); ``source`` says where it came from."""

    index: int
    count: int
    source: str = "--shard"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def as_dict(self) -> dict:
        return {"index": self.index, "count": self.count, "source": self.source}


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None


def _from_env(env: Mapping[str, str]) -> Shard:
    if "SLURM_ARRAY_TASK_ID" in env:
        if "SLURM_ARRAY_TASK_COUNT" not in env:
            raise ValueError("--shard auto: SLURM_ARRAY_TASK_ID is set but "
                             "SLURM_ARRAY_TASK_COUNT is not")
        task = _int(env["SLURM_ARRAY_TASK_ID"], "SLURM_ARRAY_TASK_ID")
        first = _int(env.get("SLURM_ARRAY_TASK_MIN", "0"), "SLURM_ARRAY_TASK_MIN")
        count = _int(env["SLURM_ARRAY_TASK_COUNT"], "SLURM_ARRAY_TASK_COUNT")
        index = task - first
        last = _int(env.get("SLURM_ARRAY_TASK_MAX", str(first + count - 1)),
                    "SLURM_ARRAY_TASK_MAX")
        step = _int(env.get("SLURM_ARRAY_TASK_STEP", "1"), "SLURM_ARRAY_TASK_STEP")
        if not 0 <= index < count or last - first + 1 != count or step != 1:
            # e.g. --array=0-99:2 (a step) or 1,5,9: the task ids are not 0..N-1.
            raise ValueError(f"--shard auto: SLURM task {task} (min {first}) is not one of "
                             f"{count} consecutive tasks; use --array=0-{count - 1} or "
                             "--shard K/N")
        return Shard(index, count, "SLURM_ARRAY_TASK_ID")
    if "JOB_COMPLETION_INDEX" in env:
        if "TVCLI_SHARD_COUNT" not in env:
            raise ValueError("--shard auto: JOB_COMPLETION_INDEX is set but TVCLI_SHARD_COUNT "
                             "is not (set it to the Job's completions)")
        return _checked(_int(env["JOB_COMPLETION_INDEX"], "JOB_COMPLETION_INDEX"),
                        _int(env["TVCLI_SHARD_COUNT"], "TVCLI_SHARD_COUNT"),
                        "JOB_COMPLETION_INDEX")
    if "TVCLI_SHARD_INDEX" in env and "TVCLI_SHARD_COUNT" in env:
        return _checked(_int(env["TVCLI_SHARD_INDEX"], "TVCLI_SHARD_INDEX"),
                        _int(env["TVCLI_SHARD_COUNT"], "TVCLI_SHARD_COUNT"),
                        "TVCLI_SHARD_INDEX")
    raise ValueError("--shard auto: none of SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, "
                     "TVCLI_SHARD_INDEX is set; give --shard K/N")


def _checked(index: int, count: int, source: str) -> Shard:
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in 0..{count - 1} (0-based), got {index}")
    return Shard(index, count, source)


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``'K/N'`` or ``'auto'`` -> :class:`Shard`; None -> None (no sharding).

    Raises:
        ValueError: malformed text, K outside 0..N-1, or ``auto`` without the
            scheduler's variables; a one-line message.
    """
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return _from_env(os.environ if env is None else env)
    parts = text.split("/")
    if len(parts) != 2:
        raise ValueError(f"--shard must be K/N (e.g. 0/4) or auto, got {text!r}")
    return _checked(_int(parts[0], "--shard K"), _int(parts[1], "--shard N"), "--shard")


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) that owns ``key``: the first 8 bytes of its SHA-256
    as a big-endian integer, modulo ``count``. Same on every machine and Python
    (unlike ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def job_key(source: str, inputs: list[str]) -> str:
    """The sharding key of a job reading ``source``: its path relative to the
    folder argument that holds it, without the extension, with '/' separators
    (``photos/2024/a.jpg`` given as ``photos/`` -> ``2024/a``); a file argument
    (or a missing one) is keyed by its name without extension. Independent of
    the working directory and of where the shared folder is mounted, and equal
    to the name ``tvcli eval`` pairs by, so ``tvcli run --shard K/N`` and
    ``tvcli eval --shard K/N`` over its outputs own the same images."""
    src = Path(source)
    for arg in inputs:
        folder = Path(arg)
        if source != arg and folder.is_dir():
            try:
                return src.relative_to(folder).with_suffix("").as_posix()
            except ValueError:
                continue
    return src.stem or source


def owner_filter(inputs: list[str], shard: Shard | None):
    """``job -> bool``: whether this shard runs the job (None when unsharded).
    For a planner that acts on the jobs before :func:`run_batch` selects them
    (e.g. removing stale temporary files beside outputs: only beside this
    shard's own, never beside another shard's, which may be writing them)."""
    if shard is None or shard.count == 1:
        return None
    return lambda job: shard_of(job_key(job.source, inputs), shard.count) == shard.index


def select_jobs(jobs: list, inputs: list[str], shard: Shard | None) -> list:
    """The jobs of ``shard`` (all of them for None), in the planned order.

    Planning errors (a missing input, a collision) stay with the shard that owns
    their file, so that the shards' reports together are the unsharded report.
    """
    keep = owner_filter(inputs, shard)
    return list(jobs) if keep is None else [j for j in jobs if keep(j)]


# ---------------------------------------------------------------------------
# summaries


def summary_path(template: str | None, shard: Shard | None) -> Path | None:
    """``--summary`` with ``{index}`` / ``{count}`` filled in (0 / 1 unsharded)."""
    if template is None:
        return None
    index, count = (shard.index, shard.count) if shard else (0, 1)
    try:
        return Path(template.format(index=index, count=count))
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"--summary {template!r}: only {{index}} and {{count}} may appear "
                         "in braces") from None


def check_summary_path(path: Path | None, jobs: list) -> None:
    """Refuses a summary file that is an input or an output of the batch
    (ValueError, one line)."""
    if path is None:
        return
    if path.suffix.lower() != ".json":
        raise ValueError(f"--summary {path}: the file name must end in .json")
    key = os.path.realpath(path)
    for job in jobs:
        for what, other in (("an input", job.source), ("an output", job.target),
                            ("a comparison output", getattr(job, "compare", None))):
            if other and other != "-" and os.path.realpath(other) == key:
                raise ValueError(f"--summary {path} is {what} of the batch")


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes ``data`` as JSON to ``path`` via a temporary file and a rename, so a
    reader (or a kill) never sees half a file. Non-finite floats become null."""
    from tvcli.cli._jsonout import dumps

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(dumps(data) + "\n")
    os.replace(tmp, path)


def _timing_stats(seconds: list[float]) -> dict:
    if not seconds:
        return {"files": 0}
    return {"files": len(seconds), "sum_s": round(sum(seconds), 4),
            "median_s": round(statistics.median(seconds), 4),
            "max_s": round(max(seconds), 4)}


def write_summary(path: Path, *, command: str, shard: Shard | None, planned: int,
                  records: list, started: float, interrupted: bool = False,
                  extra: dict | None = None) -> dict:
    """Writes the summary of a batch run (see the module docstring); returns it.

    Args:
        path: the JSON file (written atomically).
        command: e.g. ``"smooth"``.
        shard: this run's shard, or None.
        planned: jobs in the whole (unsharded) batch.
        records: the :class:`tvcli.cli.batch.Record` of every job run so far.
        started: ``time.time()`` when the run started (seconds since the epoch).
        interrupted: the run stopped early (Ctrl-C, SIGTERM).
        extra: more top-level fields.
    """
    ok = [r for r in records if r.status == "ok"]
    wall = time.time() - started
    data = {
        "tool": "tvcli", "command": command,
        "shard": shard.as_dict() if shard else None,
        "planned_total": planned,
        "processed": len(ok),
        "skipped": sum(r.status == "skipped" for r in records),
        "failed": sum(r.status == "error" for r in records),
        "interrupted": interrupted,
        "started_utc": datetime.fromtimestamp(started, timezone.utc).isoformat(
            timespec="seconds"),
        "wall_s": round(wall, 3),
        "images_per_s": round(len(ok) / wall, 4) if wall > 0 else None,
        "timings": _timing_stats([r.seconds for r in ok if r.seconds is not None]),
        "files": {
            "processed": [{"input": r.input, "output": r.output, "seconds": r.seconds}
                          for r in ok],
            "skipped": [{"input": r.input, "output": r.output}
                        for r in records if r.status == "skipped"],
            "failed": [{"input": r.input, "output": r.output or None, "error": r.error}
                       for r in records if r.status == "error"],
        },
        **(extra or {}),
    }
    write_json_atomic(path, data)
    return data


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turns SIGTERM (what SLURM and Kubernetes send before killing a task) into
    KeyboardInterrupt while the block runs, so the summary of an interrupted run
    is still written. Outputs are written atomically either way."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum, frame):  # noqa: ARG001
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. an embedding application)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------
# the hook the folder commands call


def run_batch(command: str, inputs: list[str], jobs: list, process, *, shard: Shard | None,
              summary: str | None, as_json: bool, quiet: bool, label: str,
              extra: dict | None = None) -> int:
    """Runs this shard's share of the planned ``jobs`` with
    :func:`tvcli.cli.batch.run_jobs` and writes the ``--summary``; returns the
    exit status (0, or 1 when a job failed).

    ``jobs`` must be the plan of the *whole* batch (so its conflict checks saw
    every output). Raises CLIError for an unusable ``--summary`` or a stdin
    input with ``--shard``; KeyboardInterrupt (also from SIGTERM) propagates
    after the summary is written.
    """
    from tvcli.cli import batch
    from tvcli.cli._app import CLIError

    if shard is not None and batch.STDIO in inputs:
        raise CLIError("--shard applies to files and folders, not to stdin ('-')")
    try:
        path = summary_path(summary, shard)
        check_summary_path(path, jobs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    mine = select_jobs(jobs, inputs, shard)
    records: list = []
    started = time.time()
    interrupted = False
    try:
        with sigterm_as_interrupt():
            batch.run_jobs(mine, process, as_json=as_json, quiet=quiet, label=label,
                           sink=records)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if path is not None:
            try:
                write_summary(path, command=command, shard=shard, planned=len(jobs),
                              records=records, started=started, interrupted=interrupted,
                              extra={"selected": len(mine), **(extra or {})})
            except OSError as exc:
                # The images are written; a summary that cannot be is one more error.
                import sys

                print(f"tvcli: error: --summary {path}: {exc.strerror or exc}",
                      file=sys.stderr)
                records.append(batch.Record(str(path), "", "error", error=str(exc)))
    return batch.summarize(records)
