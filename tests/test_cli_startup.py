"""The command line answers at once: ``--version``, ``--help`` and ``tvcli models``
import neither torch nor numpy nor PIL (issue 28: torch's import alone is ~1.5 s on
a loaded CPU), and the default ``tvcli smooth`` of an image imports no torch
(tvcli._core); timings themselves are recorded in docs/cli.md, never asserted."""

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


def _torch_free_smoothing_here() -> str | None:
    """Why the default smoothing must import torch in this installation, or None."""
    from tvcli.cli import fast_filter

    if not fast_filter.enabled():
        return "tvcli._core is not built (or TVCLI_NO_FAST_CLI=1)"
    if not fast_filter.auto_is_cpu():
        return "a CUDA build: --device auto needs torch to look for a GPU"
    return None


@pytest.mark.parametrize("extra", [[], ["--device", "cpu", "--threads", "1"],
                                   ["--color", "separate"], ["--json"]])
def test_default_smoothing_of_a_png_imports_no_torch(tmp_path, extra):
    """Issue 28: `tvcli smooth photo.png` (the default model, isotropic colour TV on
    the CPU) runs on tvcli._core and never imports torch."""
    import numpy as np

    from tvcli import io

    if "--device" not in extra and (why := _torch_free_smoothing_here()):
        pytest.skip(why)
    from tvcli.cli import fast_filter

    if not fast_filter.enabled():
        pytest.skip("tvcli._core is not built")
    src, out = tmp_path / "a.png", tmp_path / "b.png"
    img = np.random.default_rng(0).random((24, 30, 3)).astype(np.float32)
    io.write_image(src, img, dtype="uint8")
    res, _ = _imports_of("smooth", str(src), "-o", str(out), "--lam", "0.05", *extra)
    assert res["code"] in (0, None), res
    assert "torch" not in res["heavy"], f"tvcli smooth {' '.join(extra)} imported torch"
    assert out.is_file()


def test_the_torch_free_check_can_fail(tmp_path):
    """With TVCLI_NO_FAST_CLI=1 the same command does import torch."""
    import numpy as np

    from tvcli import io

    src, out = tmp_path / "a.png", tmp_path / "b.png"
    io.write_image(src, np.full((8, 9, 3), 0.25, np.float32) + np.eye(8, 9)[..., None] / 2,
                   dtype="uint8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TVCLI_NO_FAST_CLI": "1"}
    r = subprocess.run([sys.executable, "-c", _PROBE, "smooth", str(src), "-o", str(out)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert "torch" in json.loads(r.stderr.strip().splitlines()[-1])["heavy"]
    assert out.is_file()
