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

#: ``--include-outputs`` of the commands that run over folders.
INCLUDE_OUTPUTS_HELP = ("Also process files in folder inputs named like tvcli's outputs "
                        "(NAME.smooth.EXT, NAME.sharpen.EXT, NAME.compare.EXT, "
                        "NAME.MODEL.EXT), which are skipped by default.")

#: Set by :func:`main` for ``--debug``: batch commands then print the traceback of
#: each failed file as well as its one-line error.
DEBUG = False


class CLIError(Exception):
    """An expected failure: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


#: Exit status for output cut by a closed pipe: what a shell reports for a
#: command killed by SIGPIPE (128 + 13), as `cat` is in `cat big | head -c 10`.
EXIT_PIPE = 141


class StdoutClosed(Exception):
    """The reader of stdout went away (a closed pipe) while tvcli was writing to it.

    Not an OSError on purpose: batch runners treat OSError as one failed file and
    go on, but nothing more can be written once stdout is gone, so :func:`main`
    ends the run quietly with :data:`EXIT_PIPE`.
    """


def write_stdout(data: bytes) -> None:
    """Writes ``data`` to the binary stdout completely, then flushes.

    ``sys.stdout.buffer.write`` can return after a partial write when the reader
    closes the pipe (it wrote 64 KiB of a 6 MB PNG and returned 65536, with no
    error), so the count is checked; a closed pipe raises :class:`StdoutClosed`.
    """
    out = sys.stdout.buffer
    view = memoryview(data)
    try:
        while view.nbytes:
            n = out.write(view)
            if not n:  # None (would block) or 0: no progress is possible
                raise BrokenPipeError("stdout accepted no more data")
            view = view[n:]
        out.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def _quiet_exit_on_closed_stdout() -> None:
    """Points stdout at /dev/null (so that the interpreter's final flush cannot
    print 'Exception ignored ... BrokenPipeError') and exits with EXIT_PIPE."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_PIPE)


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


def unwrap_help(text: str) -> str:
    """Joins the lines of each paragraph of a help text into one line.

    Typer's "rich" markup mode keeps a docstring's single newlines, so a
    paragraph wrapped at 90 columns in the source was shown broken mid-sentence
    on an 80-column terminal (and in ``tvcli --help``'s command list); one line
    per paragraph lets rich wrap it to the terminal. Paragraphs that start with
    Click's ``\\b`` marker keep their lines.
    """
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(
        line.strip() for line in p.splitlines()) for p in paragraphs)


def tidy_help(typer_app: typer.Typer) -> None:
    """Unwraps the help of every command and sub-group of ``typer_app``
    (:func:`unwrap_help`), taken from its ``help=`` or its docstring."""
    for info in typer_app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            info.help = unwrap_help(doc)
    for group in typer_app.registered_groups:
        sub = group.typer_instance
        if sub is not None:
            tidy_help(sub)
            doc = group.help or sub.info.help
            if isinstance(doc, str) and doc:
                group.help = unwrap_help(doc)


def _hide_flag_metavar() -> None:
    """Boolean flags take no value: show no ``<bool>`` type beside them in --help.

    Typer 0.2x prints a ``<bool>`` type column for flags (``--json <bool>``),
    which reads as if the flag took a value. Typer has no public switch for it,
    so its option class is patched here (skipped if that class changes).
    """
    try:
        from typer import core
    except ImportError:
        return
    option = getattr(core, "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(original, "_tvcli_patched", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_bool_flag", False) and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._tvcli_patched = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_hide_flag_metavar()


def warn(message: str) -> None:
    """Prints ``tvcli: warning: MESSAGE`` on stderr (one line)."""
    print(f"tvcli: warning: {message}", file=sys.stderr, flush=True)


def clamp_cli_threads(threads: int) -> int:
    """``--threads N`` clamped to the machine's sensible maximum
    (:func:`tvcli.threads.max_threads`), with one warning line when clamped;
    CLIError for a bad count. Imports no torch."""
    from tvcli.threads import clamp_threads

    try:
        used, reason = clamp_threads(threads)
    except ValueError:
        raise CLIError(f"--threads must be an integer >= 1, got {threads!r}") from None
    if reason is not None:
        warn(f"--threads {reason}")
    return used


def apply_threads(threads: int | None) -> int | None:
    """``--threads N`` of any command: sets torch's CPU threads, clamped to the
    machine's sensible maximum (:func:`tvcli.threads.max_threads`) with one warning
    line; returns the count set (None: torch's default is left alone)."""
    if threads is None:
        return None
    used = clamp_cli_threads(threads)
    import torch

    torch.set_num_threads(used)
    return used


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
    except (StdoutClosed, BrokenPipeError):
        # stdout's reader is gone (`tvcli smooth a.png -o - | head -c 10`): like
        # `cat`, stop without a message, non-zero
        _quiet_exit_on_closed_stdout()
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
