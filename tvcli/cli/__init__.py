"""The ``tvcli`` command line (Typer + rich).

Each subcommand lives in its own module under ``tvcli/cli/`` and registers
itself on :data:`app` when imported below. ``main()`` is the console-script
entry point: it turns expected errors into one clear line and a non-zero exit.
"""

from __future__ import annotations

from tvcli.cli import bench as _bench  # noqa: F401  (registers `tvcli bench`)
from tvcli.cli import data as _data  # noqa: F401  (registers `tvcli data`)
from tvcli.cli import eval as _eval  # noqa: F401  (registers `tvcli eval`)
from tvcli.cli import info as _info  # noqa: F401  (registers `tvcli info`)
from tvcli.cli import run as _run  # noqa: F401  (registers `tvcli run`)
from tvcli.cli import smooth as _smooth  # noqa: F401  (registers `tvcli smooth`, `sharpen`)
from tvcli.cli import train as _train  # noqa: F401  (registers `tvcli train`, `models`)
from tvcli.cli._app import app, main, tidy_help

tidy_help(app)  # one line per help paragraph: rich wraps it to the terminal

__all__ = ["app", "main"]
