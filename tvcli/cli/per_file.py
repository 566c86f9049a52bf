"""What `tvcli run` does around each file for the networks that print a record per
image (classifiers, localizers): collect the inputs, turn a failure into an error
record, print the record, and the batch's exit status. A bad file never stops the
batch."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def collect_images(inputs: list[str], recursive: bool) -> list[str]:
    """Files and folders (their images; recursive with ``recursive``) as a file list.
    A missing file stays in the list, to become an error record; ``-`` is stdin."""
    from tvcli.io import IMAGE_EXTENSIONS

    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if item != "-" and p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            files += sorted(str(f) for f in found if f.is_file()
                            and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            files.append(item)
    return files


def record_error(rec: dict, exc: BaseException) -> None:
    """Marks ``rec`` failed with the first line of ``exc`` (or its type's name)."""
    rec.update(status="error", error=str(exc).splitlines()[0] if str(exc) else
               type(exc).__name__)


def emit(rec: dict, *, as_json: bool, quiet: bool, line: str) -> None:
    """Prints ``rec``: a JSON line with ``as_json``; else an error on stderr, or
    ``line`` (the success summary) unless ``quiet``."""
    if as_json:
        print(json.dumps(rec), flush=True)
    elif rec["status"] == "error":
        print(f"tvcli: {rec['input']}: {rec['error']}", file=sys.stderr)
    elif not quiet:
        print(line, flush=True)


def exit_status(failed: int, total: int) -> int:
    """1 when a file failed (with a count on stderr for a batch), else 0."""
    if failed and total > 1:
        print(f"tvcli: {failed} of {total} files failed", file=sys.stderr)
    return 1 if failed else 0
