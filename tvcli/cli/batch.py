"""Turns the command line's inputs into jobs (input -> output) and runs them.

Planning (:func:`plan_jobs`) expands folders, names outputs and finds the
per-file problems (output equal to an input, output exists, two inputs writing
one output) before any work is done. Running (:func:`run_jobs`) processes the
jobs one by one: a failure is reported and the batch goes on; the caller turns
the records into an exit status.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tvcli.cli import _app
from tvcli.io import EXTENSIONS

STDIO = "-"


@dataclass
class Job:
    """One input file and where its result goes (``-`` is stdin / stdout)."""

    source: str
    target: str
    error: str | None = None  # a problem found while planning
    skip: bool = False  # --skip-existing and the output exists
    compare: str | None = None  # side-by-side picture to write, if any


@dataclass
class Record:
    """The outcome of one job, as printed by ``--json``."""

    input: str
    output: str
    status: str  # ok | skipped | error
    size: list[int] | None = None  # [width, height]
    channels: int | None = None
    bit_depth: int | None = None
    lam: float | None = None
    iterations: int | None = None
    seconds: float | None = None
    compare: str | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The JSON object for this record."""
        data = {k: v for k, v in self.__dict__.items() if k != "extra"}
        data.update(self.extra)
        return data


def _images_in(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    """Image files (by extension) in ``folder``, sorted; hidden files skipped."""
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    found = []
    for path in pattern:
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files, and our own ".name.XXXX.part" temp files
        if exclude is not None and (path == exclude or exclude in path.parents):
            continue  # the output folder inside an input folder
        if path.suffix.lower() in EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found)


def default_output(source: Path, operation: str) -> Path:
    """``photo.png`` -> ``photo.smooth.png`` beside it (unknown extensions -> .png)."""
    ext = source.suffix if source.suffix.lower() in EXTENSIONS else ".png"
    return source.with_name(f"{source.stem}.{operation}{ext}")


def default_output_folder(folder: Path, operation: str) -> Path:
    """``photos/`` -> ``photos-smooth/`` beside it."""
    folder = Path(os.path.abspath(folder))
    return folder.with_name(f"{folder.name}-{operation}")


def compare_path(target: str) -> str:
    """``out.png`` -> ``out.compare.png``."""
    path = Path(target)
    return str(path.with_name(f"{path.stem}.compare{path.suffix}"))


def _same_file(a: str, b: str) -> bool:
    """Whether two existing paths are one file (hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def plan_jobs(
    inputs: list[str],
    output: str | None,
    operation: str,
    *,
    recursive: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    compare: bool = False,
    compare_out: str | None = None,
    force_ext: str | None = None,
) -> list[Job]:
    """Expands ``inputs`` into jobs and names their outputs.

    ``force_ext`` (e.g. ``".png"``) replaces the extension of every output name
    made here (an output file named by the user is kept as given).

    Raises:
        ValueError: the combination of inputs and ``output`` makes no sense
            (e.g. several inputs to one file, stdin in a batch); one line.
    """
    single_file = len(inputs) == 1 and (inputs[0] == STDIO or not Path(inputs[0]).is_dir())
    into_folder = output not in (None, STDIO) and (
        not single_file or Path(output).is_dir() or output.endswith(("/", os.sep)))
    if STDIO in inputs and len(inputs) > 1:
        raise ValueError("'-' (stdin) must be the only input")
    if output == STDIO and not single_file:
        raise ValueError("-o - (stdout) needs exactly one input file")
    if compare_out is not None and not single_file:
        raise ValueError("--compare-out FILE needs exactly one input file; use --compare")
    if (compare or compare_out is not None) and single_file and (
            output == STDIO or (output is None and inputs[0] == STDIO)):
        raise ValueError("--compare needs an output file, not stdout")
    out_root = Path(output) if into_folder else None

    jobs: list[Job] = []
    for arg in inputs:
        if arg == STDIO:
            jobs.append(Job(STDIO, output or STDIO))
            continue
        path = Path(arg)
        if not path.exists():
            jobs.append(Job(arg, "", error=f"{arg}: no such file or folder"))
        elif path.is_dir():
            dest = out_root or default_output_folder(path, operation)
            exclude = Path(os.path.abspath(dest))
            files = _images_in(path, recursive, exclude if exclude != path.resolve() else None)
            if not files:
                hint = "" if recursive else " (use --recursive for subfolders)"
                jobs.append(Job(arg, "", error=f"{arg}: no images found in folder{hint}"))
            for f in files:
                jobs.append(Job(str(f), str(dest / f.relative_to(path))))
        elif out_root is not None:
            jobs.append(Job(arg, str(out_root / path.name)))
        else:
            jobs.append(Job(arg, output or str(default_output(path, operation))))

    if force_ext:
        named = single_file and output not in (None, STDIO) and not into_folder
        for job in jobs:
            if job.target and job.target != STDIO and not named:
                job.target = str(Path(job.target).with_suffix(force_ext))
    _check_targets(jobs, overwrite=overwrite, skip_existing=skip_existing)
    sources = {os.path.realpath(j.source) for j in jobs if j.source != STDIO}
    for job in jobs:
        if job.error is None and not job.skip and job.target != STDIO:
            if compare_out is not None:
                job.compare = compare_out
            elif compare:
                job.compare = compare_path(job.target)
            if job.compare is None:
                continue
            if os.path.realpath(job.compare) in sources:
                job.error = f"{job.source}: comparison {job.compare} is an input"
            elif os.path.lexists(job.compare) and not overwrite:
                job.error = f"{job.source}: comparison {job.compare} exists (use --overwrite)"
    return jobs


def _check_targets(jobs: list[Job], *, overwrite: bool, skip_existing: bool) -> None:
    """Marks jobs whose output is an input, is taken, or exists."""
    from tvcli.io import ImageError, format_from_path

    # realpath set: O(1) per job, so a 10 000-file batch is not 10^8 comparisons
    sources = {os.path.realpath(j.source) for j in jobs if j.source != STDIO and j.error is None}
    seen: dict[str, str] = {}
    for job in jobs:
        if job.error is not None or job.target == STDIO:
            continue
        try:
            format_from_path(job.target)
        except ImageError as exc:
            job.error = f"{job.target}: {exc}"
            continue
        key = os.path.realpath(job.target)
        if key in sources or (job.source != STDIO and _same_file(job.target, job.source)):
            job.error = f"{job.source}: output {job.target} is an input; refusing to overwrite it"
            continue
        if key in seen:
            job.error = f"{job.source}: output {job.target} is also the output of {seen[key]}"
            continue
        seen[key] = job.source
        if os.path.lexists(job.target):
            if skip_existing:
                job.skip = True
            elif not overwrite:
                job.error = (f"{job.source}: output {job.target} exists "
                             "(use --overwrite or --skip-existing)")


def _progress(total: int, quiet: bool):
    """A rich progress bar on stderr for multi-file jobs on a TTY, else None."""
    if quiet or total < 2 or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        # Results printed to stdout go above the bar only when stdout is the
        # same terminal; a piped stdout must not be captured into stderr.
        redirect_stdout=sys.stdout.isatty(), redirect_stderr=True,
    )


def run_jobs(
    jobs: list[Job],
    process: Callable[[Job], Record],
    *,
    as_json: bool = False,
    quiet: bool = False,
    label: str = "processing",
) -> list[Record]:
    """Runs ``process`` on every job, printing one result or error line per job.

    A failing job (an ImageError, OSError or ValueError from ``process``, or a
    planning error) gives an error record; the others still run.
    KeyboardInterrupt propagates (already written outputs are complete).
    """
    from tvcli.io import ImageError

    records: list[Record] = []
    progress = _progress(len(jobs), quiet)
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task(label, total=len(jobs), rate="")
    start = time.perf_counter()
    try:
        for job in jobs:
            if job.error is not None:
                rec = Record(job.source, job.target, "error", error=job.error)
            elif job.skip:
                rec = Record(job.source, job.target, "skipped")
            else:
                try:
                    rec = process(job)
                except (ImageError, OSError, ValueError, RuntimeError) as exc:
                    if _app.DEBUG:
                        traceback.print_exc()
                    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    if job.source not in msg and job.target not in msg:
                        msg = f"{job.source}: {msg}"
                    rec = Record(job.source, job.target, "error", error=msg)
            records.append(rec)
            _report(rec, as_json=as_json, quiet=quiet)
            if progress is not None:
                done = len(records)
                rate = done / max(time.perf_counter() - start, 1e-9)
                progress.update(task, advance=1, rate=f"{rate:.2f} files/s")
    finally:
        if progress is not None:
            progress.stop()
    return records


def _report(rec: Record, *, as_json: bool, quiet: bool) -> None:
    """One line per job: JSON or a short result on stdout, errors on stderr."""
    if rec.status == "error":
        print(f"tvcli: error: {rec.error}", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps(rec.as_dict()), flush=True)
    elif quiet or rec.output == STDIO:
        return
    elif rec.status == "skipped":
        print(f"{rec.input}: skipped, {rec.output} exists", flush=True)
    elif rec.status == "ok":
        w, h = rec.size or (0, 0)
        its = f", {rec.iterations} iterations" if rec.iterations is not None else ""
        depth = f"{rec.bit_depth}-bit" if rec.bit_depth else "float"
        print(f"{rec.input} -> {rec.output}  ({w}x{h}, {depth}{its}, {rec.seconds:.2f} s)",
              flush=True)


def summarize(records: list[Record]) -> int:
    """Prints a failure summary for batches; returns the exit status (0 or 1)."""
    failed = [r for r in records if r.status == "error"]
    if not failed:
        return 0
    if len(records) > 1:
        names = ", ".join(r.input for r in failed[:10]) + (" ..." if len(failed) > 10 else "")
        print(f"tvcli: {len(failed)} of {len(records)} files failed: {names}", file=sys.stderr)
    return 1
