"""``tvcli info``: versions, engines, threads, devices, image I/O libraries."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

import tvcli
from tvcli.cli import app


def test_info_json_is_parsable_and_true():
    res = CliRunner().invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["tvcli"] == tvcli.__version__ and data["torch"] == torch.__version__
    assert data["engines"] == tvcli.built_backends()
    assert data["threads"] == torch.get_num_threads()
    assert data["devices"][0] == "cpu" and data["cuda_available"] == torch.cuda.is_available()
    assert any(entry.startswith("imagecodecs ") for entry in data["image_io"])


def test_info_table():
    res = CliRunner().invoke(app, ["info"])
    assert res.exit_code == 0 and "engines" in res.stdout and "torch" in res.stdout
