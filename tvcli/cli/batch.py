"""Turns the command line's inputs into jobs (input -> output) and runs them.

Planning (:func:`plan_jobs`) expands folders, names outputs and finds the
per-file problems (output equal to an input, output exists, two inputs writing
one output) before any work is done. Running (:func:`run_jobs`) processes the
jobs one by one: a failure is reported and the batch goes on; the caller turns
the records into an exit status.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tvcli.cli import _app
from tvcli.cli._jsonout import json_safe
from tvcli.formats import EXTENSIONS

STDIO = "-"


@dataclass
class Job:
    """One input file and where its result goes (``-`` is stdin / stdout)."""

    source: str
    target: str
    error: str | None = None  # a problem found while planning
    skip: bool = False  # --skip-existing and the output exists
    compare: str | None = None  # side-by-side picture to write, if any
    # Live status of this job while it runs (set by run_jobs): a short phrase such
    # as "channel 2/3", shown next to the progress bar or a spinner on a terminal.
    status: Callable[[str], None] = field(default=lambda text: None, repr=False)


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


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both absolute, normalised)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _images_in(folder: Path, recursive: bool, exclude: Path | None,
               extensions: Iterable[str] | None = None) -> list[Path]:
    """Image files (by extension: ``extensions``, default every format tvcli reads)
    in ``folder``, sorted; hidden files skipped.

    Files under ``exclude`` (the output folder, when it lies inside ``folder``)
    are left out, whichever way either path is spelt (relative, via symlinks):
    a resumed batch must not take its earlier outputs for inputs.
    """
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    skip = None if exclude is None else {os.path.abspath(exclude), os.path.realpath(exclude)}
    wanted = set(EXTENSIONS if extensions is None else extensions)
    found = []
    for path in pattern:
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files, and our own ".name.XXXX.part" temp files
        if skip is not None and any(_inside(p, s) for s in skip for p in (
                os.path.abspath(path), os.path.realpath(path.parent))):
            continue  # the output folder inside an input folder
        if path.suffix.lower() in wanted and path.is_file():
            found.append(path)
    return sorted(found)


#: The tags tvcli puts before an output's extension (``photo.smooth.png``,
#: ``photo.smooth.compare.png``); ``tvcli run MODEL`` adds ``photo.MODEL.png``.
OUTPUT_TAGS = ("smooth", "sharpen", "compare")


def own_output_tags() -> frozenset[str]:
    """Every tag :func:`default_output` and :func:`compare_path` can write: the
    operations, ``compare`` and the name of every registered model."""
    try:
        from tvcli.models import MODELS
    except ImportError:  # a build without the models: the operations still count
        return frozenset(OUTPUT_TAGS)
    return frozenset(OUTPUT_TAGS) | frozenset(MODELS)


def looks_like_output(path: Path, tags: frozenset[str]) -> bool:
    """Whether ``path`` is named as tvcli names its outputs (``NAME.TAG.EXT``)."""
    stem = Path(path.name).stem
    return "." in stem and stem.rsplit(".", 1)[1] in tags


def _missing_reason(arg: str) -> str:
    """Why ``arg`` cannot be opened: no such file, a symlink loop, a broken link, ..."""
    import errno

    try:
        os.stat(arg)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (too many levels of symbolic links)"
        if exc.errno == errno.ENOENT and os.path.islink(arg):
            return f"broken symbolic link (its target {os.readlink(arg)!r} does not exist)"
        if exc.errno not in (errno.ENOENT, None):
            return f"cannot access ({exc.strerror})"
    return "no such file or folder"


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
    extra_outputs: Iterable[str | os.PathLike] = (),
    owns: Callable[[Job], bool] | None = None,
    force_ext: str | None = None,
    include_outputs: bool = True,
    skipped_outputs: list[str] | None = None,
    extensions: Iterable[str] | None = None,
    extra_inputs: Iterable[str | os.PathLike] = (),
) -> list[Job]:
    """Expands ``inputs`` into jobs and names their outputs.

    ``extra_outputs`` are other files the command will write (a summary, a JSON
    report): they take part in the collision check (:func:`check_output_plan`).
    ``owns`` (``--shard``): the jobs this process will run; stale temporary
    files are removed only beside those, never beside another shard's outputs
    (which that shard may be writing right now). ``force_ext`` (e.g. ``".png"``)
    replaces the extension of every output name made here (an output file named
    by the user is kept as given). Without ``include_outputs``, files found in
    folder inputs that are named like tvcli's outputs (``NAME.smooth.EXT``,
    ``NAME.compare.EXT``, ``NAME.MODEL.EXT``: :func:`looks_like_output`) are left
    out, so that a folder run does not filter an earlier run's results as if they
    were photos; their paths are appended to ``skipped_outputs``. Files named on
    the command line are always processed. ``extensions`` (e.g. ``(".tif",
    ".tiff")``): the file endings taken from folder inputs (default: every image
    format). ``extra_inputs``: other files the command reads (a weight map): no
    output may be one of them.

    Raises:
        ValueError: the combination of inputs and ``output`` makes no sense
            (e.g. several inputs to one file, stdin in a batch); one line.
        OutputCollisionError: (a ValueError) two outputs, or an output and an
            input, are one file.
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
            jobs.append(Job(arg, "", error=f"{arg}: {_missing_reason(arg)}"))
        elif path.is_dir():
            dest = out_root or default_output_folder(path, operation)
            same = os.path.realpath(dest) == os.path.realpath(path)
            files = _images_in(path, recursive, None if same else dest, extensions)
            own: list[Path] = []
            if not include_outputs:
                tags = own_output_tags()
                own = [f for f in files if looks_like_output(f, tags)]
                if own:
                    files = [f for f in files if not looks_like_output(f, tags)]
                    if skipped_outputs is not None:
                        skipped_outputs.extend(map(str, own))
            if not files:
                hint = "" if recursive else " (use --recursive for subfolders)"
                if own:
                    hint = (f" (only {len(own)} named like tvcli outputs; use "
                            "--include-outputs to process them)")
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
    for job in jobs:
        if job.error is None and not job.skip and job.target != STDIO:
            if compare_out is not None:
                job.compare = compare_out
            elif compare:
                job.compare = compare_path(job.target)
            if job.compare is not None and os.path.lexists(job.compare) and not overwrite \
                    and not _same_file(job.compare, job.source):
                job.error = f"{job.source}: comparison {job.compare} exists (use --overwrite)"
    check_output_plan(jobs, extra_outputs, extra_inputs)
    if skip_existing:
        remove_stale_parts(jobs if owns is None else [j for j in jobs if owns(j)])
    return jobs


def remove_stale_parts(jobs: list[Job]) -> int:
    """Deletes the temporary ``.NAME.*.part`` files that an interrupted run left
    beside this plan's outputs (resuming with --skip-existing); returns how many.

    Only files named after one of this plan's outputs are touched.
    """
    removed = 0
    for job in jobs:
        for out in (job.target, job.compare):
            if not out or out == STDIO:
                continue
            path = Path(out)
            try:
                stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.part"))
            except OSError:
                continue
            for part in stale:
                try:
                    part.unlink()
                    removed += 1
                except OSError:
                    pass
    return removed


def note_skipped_outputs(skipped: list[str], quiet: bool) -> None:
    """One stderr line: how many files of folder inputs were left out as tvcli's
    own outputs, and how to include them."""
    if not skipped or quiet:
        return
    n = len(skipped)
    names = ", ".join(Path(p).name for p in skipped[:3]) + (", ..." if n > 3 else "")
    print(f"tvcli: skipped {n} file{'s' if n != 1 else ''} in folder inputs named like "
          f"tvcli outputs ({names}); use --include-outputs to process them",
          file=sys.stderr, flush=True)


def refuse_binary_to_terminal(jobs: list[Job]) -> None:
    """ValueError when an image would be written to stdout and stdout is a terminal."""
    if any(j.target == STDIO and j.error is None for j in jobs) and sys.stdout.isatty():
        raise ValueError("refusing to write a binary image to the terminal; redirect stdout "
                         "(> out.png) or give -o FILE")


class OutputCollisionError(ValueError):
    """Two outputs of one command, or an output and an input, are the same file."""


def _file_keys(path: str) -> list[tuple]:
    """Identities of ``path``: its resolved name, and (device, inode) when it exists.

    The inode catches hard links and case-insensitive file systems, the resolved
    name symlinks, ``..`` and relative spellings of files not yet written.
    """
    keys: list[tuple] = [("name", os.path.realpath(path))]
    try:
        st = os.stat(path)
    except OSError:
        return keys
    keys.append(("inode", st.st_dev, st.st_ino))
    return keys


def check_output_plan(jobs: list[Job], extra_outputs: Iterable[str | os.PathLike] = (),
                      extra_inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuses a plan in which any two files it will write, or a written file and an
    input, are the same file; called before any work starts. ``extra_inputs`` are
    files read besides the jobs' sources (a ``--lam-map``): inputs too.

    Every output that the jobs will write (results, comparison pictures) and every
    path in ``extra_outputs`` (a summary or JSON file the command writes) is
    compared with every other one and with every input, by resolved path and,
    for files that exist, by inode. Jobs already marked with a per-file error or
    skipped write nothing and are left out; a job's result equal to an input or
    to another job's result is such a per-file error (see :func:`_check_targets`).

    Raises:
        OutputCollisionError: one line naming both roles of the colliding file.
    """
    inputs: dict[tuple, str] = {}
    for job in jobs:
        if job.source not in (STDIO, "") and os.path.lexists(job.source):
            for key in _file_keys(job.source):
                inputs[key] = job.source
    for extra in extra_inputs:
        if os.path.lexists(extra):
            for key in _file_keys(os.fspath(extra)):
                inputs.setdefault(key, os.fspath(extra))
    written: dict[tuple, str] = {}

    def claim(path: str, role: str) -> None:
        for key in _file_keys(path):
            if key in inputs:
                raise OutputCollisionError(
                    f"{path} would be {role}, but it is the input {inputs[key]}; refusing to "
                    "overwrite an input (nothing was written)")
            if written.get(key, role) != role:
                raise OutputCollisionError(
                    f"{path} would be both {written[key]} and {role}; nothing was written "
                    "(choose other output names)")
            written[key] = role

    for job in jobs:
        if job.error is not None or job.skip:
            continue
        if job.target != STDIO:
            claim(job.target, f"the result of {job.source}")
        if job.compare is not None:
            claim(job.compare, f"the comparison picture of {job.source}")
    for extra in extra_outputs:
        claim(os.fspath(extra), f"the output file {os.fspath(extra)}")


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
        TextColumn("[bold]{task.description}"), TextColumn("{task.fields[detail]}"),
        BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        # Results printed to stdout go above the bar only when stdout is the
        # same terminal; a piped stdout must not be captured into stderr.
        redirect_stdout=sys.stdout.isatty(), redirect_stderr=True,
    )


def _spinner(quiet: bool):
    """A one-line rich status (spinner, text, elapsed time) on stderr for a single
    file on a terminal, else None: a 12-megapixel converged solve takes minutes."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                    TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True,
                    redirect_stdout=sys.stdout.isatty(), redirect_stderr=True)


def run_jobs(
    jobs: list[Job],
    process: Callable[[Job], Record],
    *,
    as_json: bool = False,
    quiet: bool = False,
    label: str = "processing",
    sink: list[Record] | None = None,
) -> list[Record]:
    """Runs ``process`` on every job, printing one result or error line per job.

    A failing job (an ImageError, OSError or ValueError from ``process``, or a
    planning error) gives an error record; the others still run.
    KeyboardInterrupt propagates (already written outputs are complete).
    ``sink``, if given, is the list the records are appended to (and returned):
    after an interruption it still holds the records of the finished jobs.
    """
    from tvcli.io import ImageError

    records: list[Record] = [] if sink is None else sink
    progress = _progress(len(jobs), quiet)
    if progress is None and len(jobs) == 1:
        progress = _spinner(quiet)
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task(label, total=len(jobs), rate="", detail="")
    start = time.perf_counter()

    def status_of(job: Job) -> Callable[[str], None]:
        def update(text: str) -> None:
            # refresh now: a phrase may last less than the display's refresh period
            progress.update(task, detail=f"{Path(job.source).name}: {text}", refresh=True)
        return update

    try:
        for job in jobs:
            if progress is not None:
                job.status = status_of(job)
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
                progress.update(task, advance=1, rate=f"{rate:.2f} files/s", detail="")
    finally:
        if progress is not None:
            progress.stop()
    return records


def _report(rec: Record, *, as_json: bool, quiet: bool) -> None:
    """One line per job: JSON or a short result on stdout, errors on stderr."""
    if rec.status == "error":
        print(f"tvcli: error: {rec.error}", file=sys.stderr, flush=True)
    if as_json:  # strict JSON: a non-finite number (--lam inf) is written as null
        print(json.dumps(json_safe(rec.as_dict()), allow_nan=False), flush=True)
    elif quiet or rec.output == STDIO:
        return
    elif rec.status == "skipped":
        print(f"{rec.input}: skipped, {rec.output} exists", flush=True)
    elif rec.status == "ok":
        w, h = rec.size or (0, 0)
        its = f", {rec.iterations} iterations" if rec.iterations is not None else ""
        if rec.extra.get("stop") == "max_iter":  # not converged to --tol: say so
            bound = rec.extra.get("error_bound")
            its += (" (stopped by --max-iter before --tol" +
                    (f"; RMS error bound {bound:.1e})" if bound is not None else ")"))
        depth = f"{rec.bit_depth}-bit" if rec.bit_depth else "float"
        size = f"{w}x{h}" + (f"x{rec.extra['depth']}" if rec.extra.get("depth") else "")
        print(f"{rec.input} -> {rec.output}  ({size}, {depth}{its}, {rec.seconds:.2f} s)",
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
