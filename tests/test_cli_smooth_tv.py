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
    (["--tv", "aniso", "--color", "joint"], "--color joint needs --tv iso"),
    (["--iters", "4", "--color", "joint"], "--color joint needs --tv iso"),
    (["--tv", "iso", "--iters", "4"], "--tv iso"),
    (["--tv", "iso", "--mode", "rows"], "--tv iso"),
    (["--tv", "round"], "--tv must be"),
])
def test_smooth_tv_option_errors(photo, tmp_path, args, msg: str) -> None:
    res = runner.invoke(app, ["smooth", str(photo), "-o", str(tmp_path / "o.png"), *args])
    # main() turns a CLIError into one stderr line and exit status 2.
    assert isinstance(res.exception, CLIError) and res.exception.code == 2
    assert msg in str(res.exception)


def test_default_is_colour_tv_and_iters_rows_keep_aniso(photo, tmp_path) -> None:
    """The defaults chosen in docs/tv_variants.md: iso + joint for the converged
    operator; --iters and --mode rows/cols have only aniso; an unset --color follows
    --tv."""
    import json

    def record(*args: str) -> dict:
        res = runner.invoke(app, ["smooth", str(photo), "-o", str(tmp_path / "o.png"),
                                  "--overwrite", "--json", *args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    rec = record("--lam", "0.1")
    assert (rec["tv"], rec["color"]) == ("iso", "joint")
    assert rec["tol"] == 5e-4 and rec["stop"] == "tol"  # 8-bit colour TV: 5e-4
    got = io.read_image(tmp_path / "o.png")[0]
    x = torch.from_numpy(io.read_image(photo)[0]).permute(2, 0, 1).contiguous()
    want = tvcli.prox_tv(x, 0.1, norm="iso", channel_dim=0, tol=1e-5).permute(1, 2, 0)
    assert np.abs(got - io.to_samples(want.numpy(), "uint8") / 255).max() <= 2 / 255
    assert (record("--tv", "iso", "--color", "separate")["color"]) == "separate"
    assert (record("--tv", "aniso")["tv"], record("--tv", "aniso")["color"]) == \
        ("aniso", "separate")
    assert record("--iters", "3")["tv"] == "aniso"
    assert record("--mode", "rows")["tv"] == "aniso"
