"""The ``tvcli`` command line (Typer + rich).

Each subcommand lives in its own module under ``tvcli/cli/`` and registers itself
on :data:`app` when imported; :func:`main` (the console-script entry point) imports
them, except for ``tvcli --version``, which answers before Typer is even imported.
``main()`` turns expected errors into one clear line and a non-zero exit.

Start-up cost is part of the interface: no command module imports torch, numpy or
PIL at module level (they are imported by the code that runs a command), so
``--version``, ``--help`` and ``tvcli models`` answer at once
(``tests/test_cli_startup.py`` checks which modules they import).
"""

from __future__ import annotations

import importlib
import sys

# The modules that register commands (``train`` also registers ``models``,
# ``smooth`` also ``sharpen``).
COMMAND_MODULES = ("bench", "data", "eval", "info", "run", "smooth", "train")

_loaded = False

__all__ = ["COMMAND_MODULES", "app", "main"]


def load_commands():
    """Imports every command module (registering its commands) once; returns the app."""
    global _loaded
    from tvcli.cli._app import app, tidy_help

    if not _loaded:
        for name in COMMAND_MODULES:
            importlib.import_module(f"tvcli.cli.{name}")
        tidy_help(app)  # one line per help paragraph: rich wraps it to the terminal
        _loaded = True
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (see :func:`tvcli.cli._app.main`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):  # needs no command table: answer at once
        from tvcli import __version__

        print(f"tvcli {__version__}")
        sys.exit(0)
    load_commands()
    from tvcli.cli._app import main as app_main

    app_main(argv)


def __getattr__(name: str):
    if name == "app":  # the complete application, every command registered
        return load_commands()
    raise AttributeError(f"module 'tvcli.cli' has no attribute {name!r}")
