"""The command line answers at once: ``--version``, ``--help`` and ``tvcli models``
import neither torch nor numpy nor PIL (issue 28: torch's import alone is ~1.5 s on
a loaded CPU); timings themselves are recorded in docs/cli.md, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_PROBE = """
import json, sys
from tvcli.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = ("torch", "numpy", "PIL")
print(json.dumps({"code": code, "heavy": sorted(m for m in heavy if m in sys.modules)}),
      file=sys.stderr)
"""


def _imports_of(*args: str) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                       env=env, timeout=120)
    return json.loads(r.stderr.strip().splitlines()[-1]), r.stdout


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["--help"], ["models"],
                                  ["models", "--json"], ["smooth", "--help"],
                                  ["train", "--help"], ["eval", "--help"]])
def test_answers_without_torch(args):
    res, out = _imports_of(*args)
    assert res["code"] in (0, None), (args, res)
    assert res["heavy"] == [], f"tvcli {' '.join(args)} imported {res['heavy']}"
    assert out.strip()


def test_version_and_models_say_the_same_as_before():
    import tvcli
    from tvcli.models import MODELS

    _, out = _imports_of("--version")
    assert out.strip() == f"tvcli {tvcli.__version__}"
    _, out = _imports_of("models", "--json")
    listed = json.loads(out)
    assert set(listed["models"]) == set(MODELS) and listed["weights"]


def test_a_command_that_computes_still_imports_torch():
    """The check can fail: a real command does import torch."""
    res, _ = _imports_of("info", "--json")
    assert "torch" in res["heavy"]
