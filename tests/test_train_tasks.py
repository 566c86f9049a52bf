"""The generic training loop with a non-denoising task, and the BSD432 recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tvcli.learning.tasks import TASKS, Task, register_task
from tvcli.learning.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


class _HalveTask(Task):
    """Learn y = x / 2 on random 1x8x8 inputs; metric = validation MSE (lower is better)."""

    name = "halve"
    metric = "val_mse"
    higher_is_better = False

    def load(self, data):
        return None, torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))

    def data_digest(self, data):
        return "synthetic"

    def sample(self, train_set, gen, dgen, device):
        x = torch.rand(self.cfg.batch, 3, 8, 8, generator=gen)
        return x, x / 2, None

    @torch.no_grad()
    def validate(self, model: nn.Module, val_set, device) -> float:
        return float(nn.functional.mse_loss(model(val_set), val_set / 2))

    def export_tag(self) -> str:
        return "half"


def test_custom_task_trains_resumes_and_exports(tmp_path):
    from tvcli.learning.train import export_weights

    register_task("halve", _HalveTask)
    try:
        cfg = TrainConfig(model="dncnn", data=str(tmp_path), out=str(tmp_path / "run"),
                          task="halve", steps=30, batch=4, lr=1e-2, val_every=10,
                          ckpt_every=10, model_config={"depth": 3, "width": 8})
        meta = train(cfg, progress=False, log=lambda m: None)
        hist = [h["val_mse"] for h in meta["history"]]
        assert len(hist) == 3 and hist[-1] < 0.85 * hist[0]  # it learns
        cfg2 = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "run2")})
        train(cfg2, progress=False, log=lambda m: None, stop_at=17)
        meta2 = train(cfg2, progress=False, log=lambda m: None)
        assert meta2["history"][-1]["val_mse"] == meta["history"][-1]["val_mse"]
        entry = export_weights(tmp_path / "run", tmp_path / "weights")
        assert entry["file"] == "dncnn-half.safetensors" and entry["task"] == "halve"
        assert entry["val_mse"] == hist[-1] and entry["data_digest"] == "synthetic"
    finally:
        TASKS.pop("halve", None)
    with pytest.raises(ValueError, match="unknown task 'halve'"):
        train(cfg, progress=False, log=lambda m: None)


def test_wall_budget_and_warm_start(tmp_path):
    from safetensors.torch import save_file

    from tvcli.models import build_model

    register_task("halve", _HalveTask)
    try:
        init = build_model("dncnn", depth=3, width=8)
        with torch.no_grad():
            for p in init.parameters():
                p.add_(0.01)
        save_file({k: v.contiguous() for k, v in init.state_dict().items()},
                  str(tmp_path / "init.safetensors"))
        cfg = TrainConfig(model="dncnn", data=str(tmp_path), out=str(tmp_path / "run"),
                          task="halve", steps=10_000, batch=2, lr=0.0, lr_min=0.0,
                          val_every=10_000, max_wall_s=0.2,
                          init_from=str(tmp_path / "init.safetensors"),
                          model_config={"depth": 3, "width": 8})
        meta = train(cfg, progress=False, log=lambda m: None)
        assert 0 < meta["step"] < 10_000 and len(meta["history"]) == 1
        from safetensors.torch import load_file

        got = load_file(str(tmp_path / "run" / "ckpt.safetensors"))
        # lr = 0: the checkpoint still holds the warm-start weights (BN statistics move)
        for k, v in init.named_parameters():
            assert torch.equal(got[f"model.{k}"], v)
    finally:
        TASKS.pop("halve", None)


@pytest.mark.skipif(not (SHARED / "bsds500").is_dir(), reason="needs ../shared/data")
def test_bsd432_recipe(tmp_path):
    from typer.testing import CliRunner

    from tvcli.cli import app

    out = tmp_path / "bsd432"
    res = CliRunner().invoke(app, ["data", "bsd432", str(out), "--bsds500",
                                   str(SHARED / "bsds500"), "--cbsd68",
                                   str(SHARED / "denoise" / "CBSD68"), "-q"])
    assert res.exit_code == 0, res.output
    man = json.loads((out / "manifest.json").read_text())
    stems = {Path(e["file"]).stem.removeprefix("bsds_") for e in man["images"]}
    test68 = {p.stem for p in (SHARED / "denoise" / "CBSD68").iterdir()}
    assert len(stems) == 432 and not stems & test68
    assert len(list((out / "train").glob("*.png"))) == 424
    assert len(list((out / "val").glob("*.png"))) == 8
    assert all(len(e["sha256"]) == 64 and len(e["source_sha256"]) == 64
               for e in man["images"])
    bad = CliRunner().invoke(app, ["data", "bsd432", str(tmp_path / "x"), "--bsds500",
                                   str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "no such folder" in str(bad.output + str(bad.exception))


def test_cli_init_from_errors(tmp_path):
    from test_models import _tiny_dataset
    from typer.testing import CliRunner

    from tvcli.cli import app

    data = _tiny_dataset(tmp_path / "data")
    common = ["train", "ffdnet", "--data", str(data), "--sigma-range", "0,55", "--steps", "1",
              "--out", str(tmp_path / "run"), "-q"]
    res = CliRunner().invoke(app, [*common, "--init-from", str(tmp_path / "none.safetensors")])
    assert res.exit_code != 0 and "no such file" in str(res.exception)
    res = CliRunner().invoke(app, [*common, "--init-from",
                                   str(ROOT / "weights" / "dncnn-s25.safetensors")])
    assert res.exit_code != 0 and "do not fit model 'ffdnet'" in str(res.exception)
