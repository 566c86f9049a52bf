"""``tvcli run allconv*`` (class + probabilities per image) and ``tvcli eval -m top1``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tvcli.cli import app
from tvcli.models import build_model
from tvcli.models.allconv import CIFAR10_CLASSES


@pytest.fixture
def weights(tmp_path: Path, monkeypatch) -> Path:
    """Untrained tiny allconv-tv-smooth weights in a temporary weights folder."""
    from safetensors.torch import save_file

    folder = tmp_path / "weights"
    folder.mkdir()
    torch.manual_seed(0)
    model = build_model("allconv-tv-smooth", width=4)
    with torch.no_grad():  # a classifier bias so the top class is known: "ship"
        model.classifier.bias[CIFAR10_CLASSES.index("ship")] = 5.0
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "w.safetensors"))
    digest = hashlib.sha256((folder / "w.safetensors").read_bytes()).hexdigest()
    entry = {"model": "allconv-tv-smooth", "file": "w.safetensors", "config": model.config,
             "sha256": digest, "classes": list(CIFAR10_CLASSES), "task": "classify"}
    (folder / "manifest.json").write_text(json.dumps({"weights": [entry]}))
    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(folder))
    return folder


def _err(res) -> str:
    """The one-line message of a failed CLI call (CLIError reaches CliRunner as an
    exception; `tvcli`'s entry point prints it as one line)."""
    return res.output + (str(res.exception) if res.exception else "")


def _images(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(np.uint8(rng.random((32, 32, 3)) * 255)).save(folder / "a.png")
    Image.fromarray(np.uint8(rng.random((48, 40)) * 255)).save(folder / "b.png")  # grey
    (folder / "c.png").write_bytes(b"not a png")
    return folder


def test_run_json_and_eval_top1(tmp_path: Path, weights: Path) -> None:
    imgs = _images(tmp_path / "imgs")
    res = CliRunner().invoke(app, ["run", "allconv-tv-smooth", str(imgs), "--json"])
    assert res.exit_code == 1  # c.png is broken; the others are still classified
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [Path(r["input"]).name for r in recs] == ["a.png", "b.png", "c.png"]
    a, b, c = recs
    assert a["status"] == "ok" and a["class"] == "ship" and a["resized_from"] is None
    assert abs(sum(a["probabilities"].values()) - 1) < 1e-4
    assert list(a["probabilities"]) == list(CIFAR10_CLASSES)
    assert b["status"] == "ok" and b["resized_from"] == [40, 48] and b["size"] == [32, 32]
    assert c["status"] == "error" and c["error"]
    # the CLI's probabilities are the model's softmax of the [0, 1] image
    from tvcli.models import load_pretrained

    model, _ = load_pretrained("allconv-tv-smooth")
    x = torch.from_numpy(np.asarray(Image.open(imgs / "a.png"), np.float32) / 255)
    want = torch.softmax(model(x.permute(2, 0, 1)[None]), 1)[0]
    got = torch.tensor([a["probabilities"][k] for k in CIFAR10_CLASSES])
    assert torch.allclose(got, want, atol=1e-5)

    pred = tmp_path / "pred.jsonl"
    pred.write_text(res.stdout)
    labels = tmp_path / "labels.csv"
    labels.write_text("stem,label\na,ship\nb,cat\nc,dog\n")
    ev = CliRunner().invoke(app, ["eval", str(pred), str(labels), "-m", "top1", "--json"])
    out = json.loads(ev.stdout)
    assert out["n"] == 2 and out["top1"] == pytest.approx(50.0)
    assert ev.exit_code == 1  # c was not classified: reported, status 1
    # class-named folders as labels
    gt = tmp_path / "gt"
    for stem, cls in (("a", "ship"), ("b", "ship")):
        (gt / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(gt / cls / f"{stem}.png")
    pred.write_text("\n".join(res.stdout.splitlines()[:2]))
    ev2 = CliRunner().invoke(app, ["eval", str(pred), str(gt), "-m", "top1"])
    assert ev2.exit_code == 0 and "top-1: 100.00 % over 2 images" in ev2.stdout


def test_run_classifier_errors(tmp_path: Path, weights: Path, monkeypatch) -> None:
    imgs = _images(tmp_path / "imgs")
    res = CliRunner().invoke(app, ["run", "allconv-tv-smooth", str(imgs / "a.png"),
                                   "-o", str(tmp_path / "out")])
    assert res.exit_code != 0 and "classifiers write no images" in _err(res)
    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(tmp_path / "empty"))
    res = CliRunner().invoke(app, ["run", "allconv-tv-sharp", str(imgs / "a.png")])
    assert res.exit_code != 0 and "no shipped weights" in _err(res)
    assert "Traceback" not in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,ship,extra\n")
    (tmp_path / "p.jsonl").write_text('{"input": "a.png", "status": "ok", "class": "ship"}\n')
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "p.jsonl"), str(bad), "-m", "top1"])
    assert "stem,label" in _err(res)
