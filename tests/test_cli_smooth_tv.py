"""`tvcli smooth --tv iso --color separate|joint`: the CLI runs tvcli.prox_tv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import tvcli
from tvcli import io
from tvcli.cli import app
from tvcli.cli._app import CLIError

runner = CliRunner()


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((24, 20, 3)) * 255).astype(np.uint8)
    path = tmp_path / "in.png"
    io.write_image(path, img.astype(np.float32) / 255, dtype="uint8")
    return path


@pytest.mark.parametrize("color", ["separate", "joint"])
def test_smooth_iso_matches_prox_tv(photo, tmp_path, color: str) -> None:
    out = tmp_path / f"out-{color}.tif"
    res = runner.invoke(app, ["smooth", str(photo), "-o", str(out), "--lam", "0.1", "--tv",
                              "iso", "--color", color, "--tol", "1e-4", "--bit-depth",
                              "float"])
    assert res.exit_code == 0, res.output
    got = io.read_image(out)[0]
    x = torch.from_numpy(io.read_image(photo)[0]).permute(2, 0, 1).contiguous()
    want = tvcli.prox_tv(x, 0.1, norm="iso", channel_dim=0 if color == "joint" else None,
                         tol=1e-5).permute(1, 2, 0).numpy()
    assert np.abs(got - want).max() <= 2e-3  # both within their certified RMS bounds
    aniso = tvcli.prox_tv2d(x, 0.1, tol=1e-5).permute(1, 2, 0).numpy()
    assert np.abs(got - aniso).max() > 1e-2  # not the default operator


@pytest.mark.parametrize("args,msg", [
    (["--color", "joint"], "--color joint needs --tv iso"),
    (["--tv", "iso", "--iters", "4"], "--tv iso"),
    (["--tv", "iso", "--mode", "rows"], "--tv iso"),
    (["--tv", "round"], "--tv must be"),
])
def test_smooth_tv_option_errors(photo, tmp_path, args, msg: str) -> None:
    res = runner.invoke(app, ["smooth", str(photo), "-o", str(tmp_path / "o.png"), *args])
    # main() turns a CLIError into one stderr line and exit status 2.
    assert isinstance(res.exception, CLIError) and res.exception.code == 2
    assert msg in str(res.exception)
