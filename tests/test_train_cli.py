"""`tvcli train` for every registered task (tvcli/learning/train/config.py), the lam history
of the shared loop (paper Fig. 3) and its table script. Synthetic data only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tvcli.learning.tasks import task_class
from tvcli.learning.train import TrainConfig, export_weights, get_task, lam_table, train
from tvcli.learning.train.config import TrainSetupError, make_config, task_of
from tvcli.models import MODELS, build_model
from tvcli.nn import learned_lams

ROOT = Path(__file__).resolve().parents[1]


def _denoise_data(root: Path) -> Path:
    """A `tvcli data fetch`-like folder: train/, val/ PNGs and a manifest."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.uint8(rng.random((36, 40, 3)) * 255)).save(
                root / split / f"im{i}.png")
    (root / "manifest.json").write_text(json.dumps({"images": [], "digest": "d0"}))
    return root


def _cifar(root: Path) -> Path:
    from test_classify_task import make_cifar

    return make_cifar(root, per_class=1)


def _bsds(root: Path) -> Path:
    from test_edges_models import _fake_bsds

    _fake_bsds(root, n=2)
    return root


def _run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """tvcli's console entry point: (exit code, stdout, stderr)."""
    from tvcli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


# ------------------------------------------------------------------ task selection


def test_every_registered_model_has_a_task_with_defaults() -> None:
    want = {"dncnn": "denoise", "dncnn-tv": "denoise", "ffdnet": "denoise",
            "ffdnet-tv": "denoise", "eps": "eps", "eps-tv": "eps", "dexined": "edges",
            "dexined-tv": "edges", "allconv": "classify", "allconv-tv-smooth": "classify",
            "allconv-tv-sharp": "classify", "cam": "wsol", "cam-tv": "wsol"}
    assert {m: task_of(m) for m in MODELS} == want
    for name in MODELS:
        task = task_of(name)
        assert task_class(task).defaults.batch >= 1
        # the task is registered (its module imported on demand) and takes the model
        t = get_task(TrainConfig(model=name, data=".", out=".", task=task))
        t.check_model(build_model(name, **({"width": 4} if task in ("edges", "classify")
                                           else {"backbone": "random"} if task == "wsol"
                                           else {})))
    with pytest.raises(TrainSetupError, match="unknown model"):
        task_of("resnet50")


def test_make_config_uses_task_defaults_and_rejects_foreign_options(tmp_path) -> None:
    bsds = _bsds(tmp_path / "bsds")
    cfg = make_config("dexined-tv", bsds, tmp_path / "r", steps=5)
    assert (cfg.task, cfg.batch, cfg.patch, cfg.val_crop, cfg.model_config) == \
        ("edges", 4, 160, 320, {"width": 16})
    cfg = make_config("dexined", bsds, None, width=8, task_options={"val_hold": 1})
    assert cfg.model_config == {"width": 8} and cfg.task_config == {"val_hold": 1}
    assert cfg.out == str(Path("runs") / "dexined-edges")
    cifar = _cifar(tmp_path / "c")
    cfg = make_config("allconv", cifar, tmp_path / "r2",
                      task_options={"train_per_class": 3, "val_per_class": None})
    assert cfg.task == "classify" and cfg.batch == 32 and cfg.task_config == \
        {"train_per_class": 3}
    assert "dropout" not in cfg.model_config  # the model's own (All-CNN-C's) default
    cfg = make_config("allconv", cifar, tmp_path / "r3", dropout=[0.0, 0.25])
    assert (cfg.model_config["dropout_in"], cfg.model_config["dropout"]) == (0.0, 0.25)
    for kwargs, msg in (
            (dict(model="allconv", data=cifar, patch=16), "--patch does not apply"),
            (dict(model="allconv", data=cifar, sigma=25), "--sigma do not apply"),
            (dict(model="dexined", data=bsds, task_options={"train_per_class": 2}),
             "--train-per-class does not apply to dexined .*for classify"),
            (dict(model="allconv", data=cifar, task_options={"train_per_class": 0}),
             "positive integer"),
            (dict(model="dexined", data=cifar), "not a BSDS500 folder"),
            (dict(model="allconv", data=bsds), "not CIFAR-10"),
            (dict(model="eps-tv", data=bsds), "not a `tvcli data eps` folder"),
            (dict(model="dncnn", data=bsds), "run `tvcli data fetch"),
            (dict(model="dncnn", data=tmp_path / "nope"), "no such file"),
            (dict(model="dexined", data=bsds, dropout=[0.0, 0.0]),
             "--dropout does not apply to dexined"),
            (dict(model="allconv", data=cifar, dropout=[0.2, 1.0]), "0 <= p < 1"),
            (dict(model="allconv", data=cifar, dropout=[0.2]), "IN,MID")):
        with pytest.raises(TrainSetupError, match=msg):
            make_config(out=tmp_path / "x", **kwargs)


@pytest.mark.parametrize("argv,msg", [
    (["train", "resnet50", "--data", "{cifar}"], "unknown model 'resnet50'"),
    (["train", "allconv", "--data", "{bsds}"], "is not CIFAR-10"),
    (["train", "dexined-tv", "--data", "{cifar}"], "is not a BSDS500 folder"),
    (["train", "dncnn", "--data", "{cifar}", "--train-per-class", "5"],
     "--train-per-class does not apply to dncnn"),
    (["train", "allconv-tv-sharp", "--data", "{cifar}", "--sigma", "15"],
     "--sigma do not apply"),
    (["train", "eps-tv", "--data", "{denoise}"], "not a `tvcli data eps` folder"),
    (["train", "allconv", "--data", "{cifar}", "--dropout", "0.2"], "--dropout must be IN,MID"),
    (["train", "allconv", "--data", "{cifar}", "--dropout", "a,b"], "--dropout must be IN,MID"),
    (["train", "dncnn", "--data", "{denoise}", "--dropout", "0,0"],
     "--dropout does not apply to dncnn"),
])
def test_cli_bad_input_is_one_line_and_nonzero(argv, msg, tmp_path, capsys) -> None:
    paths = {"{cifar}": str(_cifar(tmp_path / "c")), "{bsds}": str(_bsds(tmp_path / "b")),
             "{denoise}": str(_denoise_data(tmp_path / "d"))}
    code, out, err = _run_main([paths.get(a, a) for a in argv], capsys)
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("tvcli: error: ") and msg in err, err
    assert "Traceback" not in err + out and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ end to end


def test_cli_trains_and_exports_a_classifier_with_lam_history(tmp_path, capsys,
                                                              monkeypatch) -> None:
    cifar = _cifar(tmp_path / "c")
    run, weights = tmp_path / "run", tmp_path / "w"
    argv = ["train", "allconv-tv-smooth", "--data", str(cifar), "--out", str(run),
            "--steps", "2", "--batch", "4", "--width", "4", "--train-per-class", "1",
            "--val-per-class", "1", "--val-every", "1", "--threads", "1", "-q",
            "--dropout", "0,0.1", "--export", str(weights)]
    code, out, err = _run_main(argv, capsys)
    assert code == 0, err
    rec = json.loads(out.splitlines()[0])
    assert rec["task"] == "classify" and rec["step"] == 2 and "val_top1" in rec
    man = json.loads((weights / "manifest.json").read_text())
    (e,) = man["weights"]
    assert e["file"] == "allconv-tv-smooth-cifar10.safetensors"
    assert (e["steps"], e["batch"], e["seed"], e["threads"]) == (2, 4, 0, 1)
    # wall_s is rounded to 0.1 s: two tiny steps may record 0.0
    assert isinstance(e["wall_s"], float) and e["wall_s"] >= 0
    assert e["data_digest"].startswith("files:")
    assert e["train_per_class"] == 1
    assert (e["config"]["dropout_in"], e["config"]["dropout"]) == (0.0, 0.1)
    assert e["task_config"] == {"train_per_class": 1, "val_per_class": 1}
    lam = e["lam_history"]
    assert lam["steps"] == [0, 1, 2]
    assert list(lam["layers"]) == ["blocks.0.tv", "blocks.1.tv", "blocks.2.tv"]
    assert lam["layers"]["blocks.0.tv"]["mean"][0] == pytest.approx(0.05, abs=1e-6)
    # `tvcli models` lists it with its top-1 (piped: tab-separated rows)
    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(weights))
    code, out, _ = _run_main(["models"], capsys)
    row = next(ln for ln in out.splitlines() if "allconv-tv-smooth-cifar10" in ln)
    assert code == 0 and row.split("\t")[-1] == f"top-1 {e['val_top1']:.1f} %"
    # resumable: more steps continue the same run folder
    code, out, err = _run_main([*argv[:6], "--steps", "3", *argv[8:-4]], capsys)
    assert code == 0, err
    assert "resumed allconv-tv-smooth at step 2" in out + err
    assert json.loads((run / "ckpt.json").read_text())["step"] == 3
    # the resumed steps keep the run's dropout (it owns no weights a state dict
    # could check): no --dropout keeps it, a different one is refused in one line
    assert json.loads((run / "ckpt.json").read_text())["model_config"]["dropout"] == 0.1
    code, out, err = _run_main([*argv[:6], "--steps", "4", *argv[8:-4], "--dropout", "0,0.5"],
                               capsys)
    assert code != 0 and err.count("\n") == 1
    assert "was trained with dropout 0.1 (asked: 0.5)" in err, err
    assert json.loads((run / "ckpt.json").read_text())["step"] == 3


def test_cli_trains_an_edge_detector(tmp_path, capsys) -> None:
    bsds = _bsds(tmp_path / "b")
    code, out, err = _run_main(["train", "dexined-tv", "--data", str(bsds), "--out",
                                str(tmp_path / "run"), "--steps", "1", "--batch", "1",
                                "--patch", "32", "--width", "4", "--val-hold", "1", "-q"],
                               capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "ckpt.json").read_text())
    assert meta["config"]["task"] == "edges" and meta["config"]["task_config"] == \
        {"val_hold": 1} and meta["model_config"]["width"] == 4
    assert meta["data_digest"].startswith("bsds500:files:")  # train + val, not test
    (bsds / "images" / "test" / "0.jpg").unlink()
    assert get_task(TrainConfig(model="dexined", data=str(bsds), out=".", task="edges")
                    ).data_digest(bsds) == meta["data_digest"]
    (bsds / "images" / "val" / "0.jpg").unlink()
    assert get_task(TrainConfig(model="dexined", data=str(bsds), out=".", task="edges")
                    ).data_digest(bsds) != meta["data_digest"]
    assert [r["step"] for r in meta["lam_history"]] == [0, 1]
    assert list(meta["lam_history"][0]["lams"]) == ["tv_sharp.0", "tv_sharp.1", "tv_sharp.2",
                                                    "tv_sharp.3", "tv_smooth"]


# ------------------------------------------------------------------ lam history


@pytest.mark.parametrize("name,layers", [
    ("allconv-tv-smooth", {"blocks.0.tv": 1, "blocks.1.tv": 1, "blocks.2.tv": 1}),
    ("dexined-tv", {"tv_sharp.0": 1, "tv_sharp.1": 1, "tv_sharp.2": 1, "tv_sharp.3": 1,
                    "tv_smooth": 1}),
    ("eps-tv", None),
    ("dncnn-tv", {"tv_in": 3, "tv_out": 3}),
    ("ffdnet-tv", {"tv_in": 3, "tv_out": 3}),
    ("allconv", {}), ("dncnn", {}), ("dexined", {}), ("eps", {}),
])
def test_learned_lams_finds_each_models_tv_layers(name, layers) -> None:
    small = {"classify": {"width": 4}, "edges": {"width": 4}, "eps": {"width": 8},
             "denoise": {"width": 8}}[task_of(name)]
    model = build_model(name, **small)
    lams = learned_lams(model)
    if layers is None:  # eps-tv: four per-channel TV1D-sharp layers + one shared output lam
        assert len(lams) == 5 and [len(v) for v in lams.values()] == [8, 8, 8, 8, 1]
    else:
        assert {k: len(v) for k, v in lams.items()} == layers
    if hasattr(model, "lams"):  # All-Conv's own accessor agrees
        assert [v[0] for v in lams.values()] == pytest.approx(model.lams(), rel=1e-6)


def test_lam_history_is_recorded_and_resumes_exactly(tmp_path) -> None:
    data = _denoise_data(tmp_path / "d")
    kw = dict(model="dncnn-tv", data=str(data), steps=4, batch=2, patch=16, val_every=2,
              ckpt_every=1, val_crop=24, lr=1e-2, model_config={"depth": 3, "width": 4})
    full = train(TrainConfig(out=str(tmp_path / "a"), **kw), progress=False)
    train(TrainConfig(out=str(tmp_path / "b"), **kw), progress=False, stop_at=3)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **kw), progress=False,
                    log=lambda *a: None)
    hist = full["lam_history"]
    assert [r["step"] for r in hist] == [0, 2, 4]
    assert hist[0]["lams"]["tv_in"] == pytest.approx([0.01] * 3, rel=1e-5)
    assert hist[-1]["lams"]["tv_in"] != hist[0]["lams"]["tv_in"]  # learned: it moved
    assert resumed["lam_history"] == hist  # bit-identical after an interruption
    on_disk = json.loads((tmp_path / "b" / "ckpt.json").read_text())["lam_history"]
    assert on_disk == hist
    entry = export_weights(tmp_path / "a", tmp_path / "w")
    table = entry["lam_history"]
    assert table == lam_table(hist) and table["steps"] == [0, 2, 4]
    col = table["layers"]["tv_out"]
    assert col["channels"] == 3 and col["min"][-1] <= col["mean"][-1] <= col["max"][-1]
    # the table script reads the run folder and the manifest
    for src in ([str(tmp_path / "a")],
                [str(tmp_path / "w" / "manifest.json"), "--entry", "dncnn-tv"]):
        res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lam_history.py"),
                              *src], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        rows = [ln for ln in res.stdout.splitlines() if ln.startswith("| ")]
        assert rows[0].startswith("| step | tv_in (mean of 3) | tv_out (mean of 3)")
        assert [r.split(" | ")[0] for r in rows[1:]] == ["| 0", "| 2", "| 4"]
        assert float(rows[-1].split(" | ")[1]) == pytest.approx(
            np.mean(hist[-1]["lams"]["tv_in"]), rel=1e-4)
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lam_history.py"),
                          str(tmp_path / "a"), "--csv"], capture_output=True, text=True,
                         timeout=120)
    assert res.stdout.splitlines()[0] == "step,layer,channels,mean,min,max"
    assert len(res.stdout.splitlines()) == 1 + 2 * 3


def test_models_without_tv_layers_record_no_lam_history(tmp_path) -> None:
    data = _denoise_data(tmp_path / "d")
    meta = train(TrainConfig(model="dncnn", data=str(data), out=str(tmp_path / "r"), steps=1,
                             batch=1, patch=16, val_crop=24,
                             model_config={"depth": 3, "width": 4}), progress=False)
    assert "lam_history" not in meta and meta["threads"] == [torch.get_num_threads()]
    assert "lam_history" not in export_weights(tmp_path / "r", tmp_path / "w")


def test_indexed_batch_of_a_classifier_keeps_one_dropout_seed(tmp_path) -> None:
    """Under torchrun each rank draws its batch sample by sample (tvcli.learning.train.distributed):
    the classification task's non-tensor cond (a dropout seed) must survive that."""
    from tvcli.learning.train.loop import _indexed_sample

    cifar = _cifar(tmp_path / "c")
    cfg = make_config("allconv", cifar, tmp_path / "r", batch=3, width=4)
    task = get_task(cfg)
    train_set, _ = task.load(Path(cfg.data))
    x, y, seed = _indexed_sample(task, train_set, cfg, torch.device("cpu"), 5)
    assert x.shape == (3, 3, 32, 32) and y.shape == (3,) and isinstance(seed, int)
    again = _indexed_sample(task, train_set, cfg, torch.device("cpu"), 5)
    assert torch.equal(again[0], x) and again[2] == seed


def _repo_env() -> dict:
    """The environment for a benchmark script run as a subprocess: this checkout's
    tvcli first on the path (CI's CUDA tier runs the tests from a copy that is not
    installed)."""
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + old if old else "")}


def test_lam_init_through_tvcli_train(tmp_path, capsys) -> None:
    """`tvcli train dexined-tv --lam-init 0.5` starts all five TV layers at 0.5 (in the
    run's model config and its step-0 lam history); dexined has no TV layer and is
    refused with one line before any training."""
    bsds = _bsds(tmp_path / "b")
    args = ["train", "--data", str(bsds), "--steps", "1", "--batch", "1", "--patch", "32",
            "--width", "4", "--lam-init", "0.5", "--quiet"]
    code, _, err = _run_main([*args[:1], "dexined-tv", *args[1:], "--out",
                              str(tmp_path / "e")], capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "e" / "ckpt.json").read_text())
    assert meta["model_config"]["lam_sharp"] == meta["model_config"]["lam_smooth"] == 0.5
    first = meta["lam_history"][0]
    assert first["step"] == 0
    lams = [v for layer in first["lams"].values() for v in layer]
    assert len(lams) == 5 and all(abs(v - 0.5) < 1e-5 for v in lams), first
    code, _, err = _run_main([*args[:1], "dexined", *args[1:], "--out", str(tmp_path / "d")],
                             capsys)
    assert code != 0 and "--lam-init does not apply to dexined: it has no TV layers" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d" / "ckpt.json").exists()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_lam_init_is_honoured_by_every_tv_model(model) -> None:
    """make_config(lam_init=...) sets every TV layer of every model that has one (the
    registry's lam_keys) and refuses the others; a wrong value is refused too."""
    spec = MODELS[model]
    if not spec.lam_keys:
        with pytest.raises(TrainSetupError, match="has no TV layers"):
            make_config(model, ".", lam_init=0.3, check=False)
        return
    cfg = make_config(model, ".", lam_init=0.3, check=False)
    small = {"width": 4} if spec.task in ("edges", "classify", "eps") else {"depth": 3,
                                                                           "width": 4}
    net = build_model(model, **{**cfg.model_config, **small})
    lams = [v for vals in learned_lams(net).values() for v in vals]
    assert lams and all(abs(v - 0.3) < 1e-5 for v in lams), (model, lams)
    with pytest.raises(TrainSetupError, match="finite number > 0"):
        make_config(model, ".", lam_init=0.0, check=False)


@pytest.mark.slow  # ~20 s: it corrupts 10 images x 14 types x 5 severities
def test_cls_cifar10c_scores_a_tvcli_train_run(tmp_path, capsys) -> None:
    """The CIFAR-10-C report trains nothing: it scores the arms `tvcli train` left in
    RUNS/<arm> (the classify task's top1_accuracy) and records their budget."""
    cifar = _cifar(tmp_path / "c")
    run = tmp_path / "cls" / "allconv-tv-smooth"
    code, _, err = _run_main(["train", "allconv-tv-smooth", "--data", str(cifar), "--out",
                              str(run), "--steps", "1", "--batch", "2", "--width", "4",
                              "--dropout", "0,0", "--threads", "1", "-q"], capsys)
    assert code == 0, err
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cls_cifar10c.py"),
                          "--data", str(cifar), "--out", str(tmp_path / "cls"),
                          "--c-per-class", "1", "--arms", "allconv-tv-smooth"],
                         capture_output=True, text=True, timeout=600, env=_repo_env())
    assert res.returncode == 0, res.stderr
    r = json.loads((tmp_path / "cls" / "results.json").read_text())["allconv-tv-smooth"]
    assert r["lam_history"]["steps"] == [0, 1] and len(r["lam_history"]["layers"]) == 3
    assert "gaussian_noise" in r["top1"] and r["steps"] == 1
    assert (r["budget"]["steps"], r["budget"]["batch"], r["budget"]["width"],
            r["budget"]["dropout"], r["budget"]["threads"]) == (1, 2, 4, [0.0, 0.0], [1])
    # an arm not trained yet: one line that says how to train it
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cls_cifar10c.py"),
                          "--data", str(cifar), "--out", str(tmp_path / "cls"),
                          "--arms", "allconv"],
                         capture_output=True, text=True, timeout=600, env=_repo_env())
    assert res.returncode != 0 and "tvcli train allconv" in res.stderr
