"""Running the CLI with its stderr on a pseudo-terminal (live status and progress
bars are drawn only there), stdout on a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_with_terminal_stderr(args: list[str], columns: int) -> tuple[int, bytes, str]:
    """Runs ``python -m tvcli ARGS`` with stderr on a pty of ``columns`` columns;
    returns (exit status, stdout bytes, everything written to the terminal)."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns), "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "tvcli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")
