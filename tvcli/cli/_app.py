"""The Typer application object and the error-handling entry point."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="tvcli",
    help="Total-variation smoothing, sharpening and TV-layer networks for images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


#: One line for ``--help`` and the docs: what outputs keep and what they do not.
METADATA_NOTE = ("Outputs keep bit depth, alpha, ICC profile, DPI and EXIF where the format "
                 "can hold them; not kept: XMP/IPTC, PNG text and gamma chunks, EXIF in "
                 "TIFF/BMP, ICC in BMP, DPI in WebP (docs/cli.md, I/O guarantees).")

#: Set by :func:`main` for ``--debug``: batch commands then print the traceback of
#: each failed file as well as its one-line error.
DEBUG = False


class CLIError(Exception):
    """An expected failure: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _print_version(value: bool) -> None:
    """``--version``: prints ``tvcli X.Y.Z`` and exits (imports no torch)."""
    if value:
        from tvcli import __version__

        print(f"tvcli {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", is_eager=True,
                                 callback=_print_version, help="Print the version and exit."),
) -> None:
    """Total-variation smoothing, sharpening and TV-layer networks for images.

    Add --debug to any command to see full tracebacks.
    """


def warn(message: str) -> None:
    """Prints ``tvcli: warning: MESSAGE`` on stderr (one line)."""
    print(f"tvcli: warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. ``--debug`` anywhere shows full tracebacks.

    Usage errors are reported by Typer (exit 2); a :class:`CLIError` becomes one
    line on stderr and its exit code; anything unexpected one line and exit 1.
    """
    from typer._click import exceptions as click_exc  # Typer's bundled Click

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    global DEBUG
    DEBUG = debug
    try:
        # standalone_mode=False: usage errors come back to us as exceptions, so
        # they can be printed as one line instead of Typer's multi-line panel.
        code = app(args=args, prog_name="tvcli", standalone_mode=False)
    except click_exc.NoArgsIsHelpError:  # the help text has been printed
        sys.exit(2)
    except click_exc.UsageError as exc:
        if debug:
            raise
        where = exc.ctx.command_path if exc.ctx is not None else "tvcli"
        print(f"tvcli: error: {exc.format_message()} (see '{where} --help')", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_exc.ClickException as exc:
        print(f"tvcli: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("tvcli: interrupted", file=sys.stderr)
        sys.exit(130)
    except CLIError as exc:
        if debug:
            raise
        print(f"tvcli: error: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    except KeyboardInterrupt:
        print("tvcli: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        print(f"tvcli: error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
              file=sys.stderr)
        sys.exit(1)
    if code == 130:  # Typer turns KeyboardInterrupt into Exit(130)
        print("tvcli: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
