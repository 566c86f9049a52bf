"""The GPU training job runner's CPU dry run, its data pack and safetensors I/O."""

from __future__ import annotations

import json
import lzma
import math
import struct
import tarfile
from pathlib import Path

import pytest
import torch

from tvcli._safetensors import load_file_pure, save_file_pure
from tvcli.data.pack import read_pack, write_pack


def test_pure_safetensors_matches_the_library(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(0)
    ts = {"w": torch.randn(3, 4, generator=g), "b": torch.arange(5, dtype=torch.int64),
          "r": torch.randint(0, 255, (7,), dtype=torch.uint8, generator=g),
          "h": torch.randn(2, 2, generator=g).to(torch.bfloat16), "e": torch.zeros(0)}
    save_file_pure(ts, str(tmp_path / "a.safetensors"), {"k": "v"})
    st.save_file(ts, str(tmp_path / "b.safetensors"), {"k": "v"})
    for got in (st.load_file(str(tmp_path / "a.safetensors")),
                load_file_pure(str(tmp_path / "b.safetensors")),
                load_file_pure(str(tmp_path / "a.safetensors"))):
        assert set(got) == set(ts)
        for k, v in ts.items():
            assert got[k].dtype == v.dtype and torch.equal(got[k], v)


def test_pack_roundtrip_and_corruption(tmp_path):
    g = torch.Generator().manual_seed(1)
    arrays = {"train": torch.randint(0, 256, (2, 3, 9, 11), dtype=torch.uint8, generator=g),
              "test/x/a": torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8, generator=g)}
    write_pack(tmp_path / "p.pack", arrays, {"name": "t"})
    meta, got = read_pack(tmp_path / "p.pack")
    assert meta["name"] == "t" and all(torch.equal(got[k], v) for k, v in arrays.items())
    raw = bytearray((tmp_path / "p.pack").read_bytes())
    raw[-40] ^= 0xFF  # flip a byte of the last compressed stream
    (tmp_path / "q.pack").write_bytes(bytes(raw))
    with pytest.raises((ValueError, lzma.LZMAError)):  # lzma's own check (LZMAError) or the digest
        read_pack(tmp_path / "q.pack")


def test_pack_is_decoded_once_per_process_until_the_file_changes(tmp_path, monkeypatch):
    """A GPU run's jobs share one decode of a pack; a rewritten pack is read again,
    and ``cache=False`` always reads the file."""
    import os

    import tvcli.data.pack as dp

    calls = []
    real = dp._read_pack
    monkeypatch.setattr(dp, "_read_pack", lambda p: calls.append(p) or real(p))
    a = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    write_pack(tmp_path / "p.pack", {"a": a}, {"name": "t"})
    m1, g1 = read_pack(tmp_path / "p.pack")
    g1["extra"] = a  # a caller changing its dict does not change the cache
    m2, g2 = read_pack(tmp_path / "p.pack")
    assert len(calls) == 1 and g2["a"] is g1["a"] and set(g2) == {"a"}
    assert m2 == m1
    write_pack(tmp_path / "p.pack", {"a": a + 1}, {"name": "t"})
    st = (tmp_path / "p.pack").stat()
    os.utime(tmp_path / "p.pack", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert torch.equal(read_pack(tmp_path / "p.pack")[1]["a"], a + 1) and len(calls) == 2
    read_pack(tmp_path / "p.pack", cache=False)
    assert len(calls) == 3


def test_pack_image_and_alias_entries(tmp_path):
    """JPEG bytes are stored verbatim and decoded on read; an alias is the same
    array; a decoder that gives other pixels is reported, not fatal."""
    from tvcli.data.pack import Alias, ImageBytes, read_pack_meta
    from tvcli.learning.train.gpu_data import _jpeg, _tiny_photos

    img = _tiny_photos(1, 24, 40, 3)[0]
    data = _jpeg(img)
    write_pack(tmp_path / "p.pack", {"photo/a": ImageBytes(data), "train/a": Alias("photo/a"),
                                     "raw": img}, {"name": "t"})
    meta, got = read_pack(tmp_path / "p.pack")
    assert meta["decode_mismatch"] == []
    assert got["photo/a"].shape == (3, 24, 40) and torch.equal(got["train/a"], got["photo/a"])
    assert torch.equal(got["raw"], img)
    assert (got["photo/a"].float() - img.float()).abs().mean() < 8  # a JPEG of img
    assert (tmp_path / "p.pack").stat().st_size < len(data) + 2 * img.numel()
    with pytest.raises(ValueError, match="alias"):
        write_pack(tmp_path / "q.pack", {"b": Alias("missing")})
    # another decoder (simulated: the recorded pixel digest no longer matches) is
    # reported in decode_mismatch, not an error
    raw = (tmp_path / "p.pack").read_bytes()
    (hlen,) = struct.unpack("<Q", raw[8:16])
    header = json.loads(raw[16:16 + hlen])
    for e in header["arrays"]:
        if e.get("codec") == "image":
            e["pixels"] = "0" * 64
    hb = json.dumps(header).encode()
    (tmp_path / "r.pack").write_bytes(raw[:8] + struct.pack("<Q", len(hb)) + hb
                                      + raw[16 + hlen:])
    assert read_pack(tmp_path / "r.pack")[0]["decode_mismatch"] == ["photo/a"]
    assert read_pack_meta(tmp_path / "r.pack")["digest"] == meta["digest"]


def test_gpu_train_dry_run(tmp_path):
    from tvcli.learning.train.gpu import GROUP_SHARE, JOBS, main

    main(["run", "--dry-run", "--out", str(tmp_path / "out")])
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["log.txt", "results.json", "results.md", "weights-1.tar"]
    res = json.loads((out / "results.json").read_text())
    assert set(res["jobs"]) == {j.name for j in JOBS}
    assert set(res["groups"]) == set(GROUP_SHARE)
    with tarfile.open(out / "weights-1.tar") as tar:
        names = tar.getnames()
        man = json.loads(tar.extractfile("weights/manifest.json").read())
    assert len(names) == len(JOBS) + 1
    assert {e["file"] for e in man["weights"]} == {j["file"] for j in res["jobs"].values()}
    assert len({j["file"] for j in res["jobs"].values()}) == len(JOBS)
    for j in JOBS:
        test = res["jobs"][j.name]["test"]
        if j.task == "denoise":  # both test sets at its sigmas, both conventions
            assert len(test) == 2 * 2 * len(j.eval_options.get("sigmas", (25.0, 50.0)))
        elif j.task == "edges":
            assert test["val_hold"]["n"] == 1 and math.isfinite(test["val_hold"]["loss"])
        elif j.task == "eps":
            assert test["val"]["n"] == 1 and 0 < test["val"]["wrmse"] < 255
        elif j.task == "wsol":  # the threshold is chosen on val, then test is scored
            assert test["test"]["n"] == 20 and 0 <= test["test"]["maxboxacc_v2"] <= 100
            assert test["test"]["threshold"] == test["val"]["threshold"]
        else:
            assert test["test"]["n"] == 20 and 0 <= test["test"]["top1"] <= 100
    # every pair / triple trained at one budget
    pairs: dict = {}
    for j in JOBS:
        pairs.setdefault(j.pair, set()).add(res["jobs"][j.name]["budget_s"])
    assert all(len(b) == 1 for b in pairs.values())
    # the returned weights, evaluated here on the same data, give the same scores
    from tvcli.learning.train.gpu import evaluate_returned
    from tvcli.learning.train.gpu_data import tiny_packs

    with tarfile.open(out / "weights-1.tar") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    tiny_packs(tmp_path / "packs")
    again = evaluate_returned(tmp_path / "back" / "weights", tmp_path / "packs", JOBS,
                              log=lambda _: None)
    assert again == {j.name: res["jobs"][j.name]["test"] for j in JOBS}


def test_group_selection_and_weights(tmp_path):
    from tvcli.learning.train.gpu import GROUP_SHARE, job_weights, main, select_jobs

    jobs = select_jobs()
    w = job_weights(jobs)
    assert abs(sum(w.values()) - 1) < 1e-12
    for g, share in GROUP_SHARE.items():  # each group gets its share, split equally
        ws = [w[j.name] for j in jobs if j.group == g]
        assert abs(sum(ws) - share / sum(GROUP_SHARE.values())) < 1e-12
        assert max(ws) - min(ws) < 1e-12
    only = select_jobs(["eps"])
    assert {j.group for j in only} == {"eps"} and sum(job_weights(only).values()) == 1
    with pytest.raises(SystemExit, match="unknown group"):
        select_jobs(["nope"])
    main(["run", "--dry-run", "--groups", "classify", "--out", str(tmp_path / "o")])
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert set(res["jobs"]) == {"allconv", "allconv-tv-smooth", "allconv-tv-sharp"}


def test_full_size_weights_fit_the_output_files():
    """The real models' weights (all groups) fit the files a run brings back: at most
    MAX_OUT_FILES - 4 tars (the GPU check's tarball, results.json, results.md and
    log.txt take the others), each under TAR_BYTES, 64 MiB together."""
    from tvcli.learning.train.gpu import JOBS, MAX_OUT_FILES, TAR_BYTES, MiB, pack_bins
    from tvcli.models import build_model

    sizes = {}
    for j in JOBS:
        config = dict(j.config.get("model_config", {}))
        if config.get("backbone") == "imagenet":
            # the same state dict (the frozen backbone is not in it) without the
            # optional package that holds the ImageNet weights (CI's CUDA tier lacks it)
            config["backbone"] = "random"
        m = build_model(j.model, **config)
        sizes[j.name] = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    bins = pack_bins(sizes)
    assert len(bins) <= MAX_OUT_FILES - 4
    assert sum(sizes.values()) < 60 * MiB
    for b in bins:
        assert sum(sizes[n] + 1024 for n in b) <= TAR_BYTES
    with pytest.raises(ValueError, match="larger than a whole"):
        pack_bins({"big": TAR_BYTES})


def test_root_is_the_repository_root():
    """ROOT (the carry check's git root, data/gpu's parent, ../shared's base) is the
    checkout's root, not the package: moving gpu.py under tvcli/learning/ once left
    it at tvcli/, where `git ls-files` saw 0.8 of the 30.7 MiB a run carries."""
    from tvcli.learning.train.gpu import DEFAULT_PACK_DIR, ROOT

    repo = Path(__file__).resolve().parents[1]
    assert ROOT == repo
    assert DEFAULT_PACK_DIR == repo / "data" / "gpu"


def test_carried_size_leaves_room_for_the_packs():
    """Tracked + untracked files + the default packs' budgets stay under the
    carry limit's fail line; with data/gpu built, the measured total too."""
    import shutil
    import subprocess

    from tvcli.learning.train.gpu import (
        CARRY_FAIL_BYTES,
        DEFAULT_PACK_DIR,
        PACK_BUDGET_BYTES,
        ROOT,
        carried_bytes,
        check_carried,
    )

    if shutil.which("git") is None or subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    sizes = carried_bytes(ROOT, None)
    assert sizes["tracked"] > 0
    assert sizes["total"] + sum(PACK_BUDGET_BYTES.values()) <= CARRY_FAIL_BYTES, sizes
    if DEFAULT_PACK_DIR.is_dir():
        assert check_carried(ROOT, DEFAULT_PACK_DIR)["total"] <= CARRY_FAIL_BYTES


def test_edge_and_eps_packs_read_back(tmp_path):
    """The tasks read their data from a pack: edge labels -1/0/1 survive the +1
    storage, EPS ground truths come in the pack's filter order."""
    from tvcli.data.pack import ImageBytes
    from tvcli.learning.tasks.edges import load_edges_pack
    from tvcli.learning.tasks.eps import load_eps_pack
    from tvcli.learning.train.gpu_data import _jpeg, _tiny_photos

    imgs = _tiny_photos(2, 16, 20, 5)
    g = torch.Generator().manual_seed(2)
    labs = [torch.randint(-1, 2, (16, 20), generator=g, dtype=torch.int8) for _ in range(2)]
    write_pack(tmp_path / "e.pack", {
        "photo/train/x": ImageBytes(_jpeg(imgs[0])), "photo/val/y": ImageBytes(_jpeg(imgs[1])),
        "label/train/x": (labs[0] + 1).to(torch.uint8)[None],
        "label/val/y": (labs[1] + 1).to(torch.uint8)[None]})
    names, es = load_edges_pack(tmp_path / "e.pack")
    assert names == ["train/x", "val/y"]
    assert all(torch.equal(a[0], b) for a, b in zip(es.labels, labs, strict=True))
    assert es.images[0].shape == (3, 16, 20)
    gts = {"b": imgs[0], "a": imgs[1]}
    write_pack(tmp_path / "p.pack", {"train/input/s": imgs[0], "train/gt/s/a": gts["a"],
                                     "train/gt/s/b": gts["b"]}, {"filters": ["b", "a"]})
    ((stem, x, gt),) = load_eps_pack(tmp_path / "p.pack", "train")
    assert stem == "s" and torch.equal(x, imgs[0])
    assert torch.equal(gt[0], gts["b"]) and torch.equal(gt[1], gts["a"])
    with pytest.raises(FileNotFoundError):
        load_eps_pack(tmp_path / "p.pack", "val")


def test_cifar_subset_keeps_bytes_and_counts(tmp_path):
    from tvcli.data.cifar import load_cifar10
    from tvcli.learning.train.gpu_data import make_cifar_subset, tiny_packs

    tiny_packs(tmp_path / "d")  # 2 train and 2 test JPEGs per class
    src = tmp_path / "d" / "cifar10.tar.gz"
    n = make_cifar_subset(src, tmp_path / "c.tar.gz", 1, 2, log=lambda _: None)
    assert n == 10 * 1 + 10 * 2
    x, y = load_cifar10(tmp_path / "c.tar.gz", "train")
    assert len(y) == 10 and sorted(y.tolist()) == list(range(10))
    with tarfile.open(src) as a, tarfile.open(tmp_path / "c.tar.gz") as b:
        for m in b.getmembers():  # the JPEGs byte for byte
            assert b.extractfile(m).read() == a.extractfile(m.name).read()


@pytest.mark.slow  # ~60 s on the loaded 2-core machine: reads 102 .mat files
def test_bsds_pack_from_shared_data(tmp_path):
    """With ../shared/data: CBSD68 comes out of the packed val JPEGs exactly, and
    no CBSD68 photo is in the denoisers' train or val split."""
    from tvcli.learning.train.gpu import ROOT
    from tvcli.learning.train.gpu_data import make_bsds_pack

    shared = ROOT.parent / "shared" / "data"
    if not (shared / "bsds500" / "groundTruth").is_dir() or \
            not (shared / "denoise" / "CBSD68").is_dir():
        pytest.skip("../shared/data (BSDS500, CBSD68) not present")
    from tvcli.data.pack import decode_image

    make_bsds_pack(shared / "bsds500", shared / "denoise" / "CBSD68", tmp_path / "b.pack",
                   n_train=2, log=lambda _: None)
    meta, a = read_pack(tmp_path / "b.pack")
    assert meta["decode_mismatch"] == []
    cbsd = sorted((shared / "denoise" / "CBSD68").glob("*.png"))
    for p in cbsd[::17]:
        assert torch.equal(a[f"test/CBSD68/{p.stem}"], decode_image(p.read_bytes()))
    stems = {p.stem for p in cbsd}
    den = {k.rsplit("/", 1)[1] for k in a if k.startswith(("train/", "val/"))}
    assert len(den) == 2 + 100 - 68 and not den & stems
    assert sum(k.startswith("label/") for k in a) == 102


def test_a_failing_job_does_not_stop_the_run(tmp_path, monkeypatch):
    from tvcli.learning.tasks import task_class
    from tvcli.learning.train import gpu

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(task_class("eps"), "evaluate", broken)
    with pytest.raises(SystemExit, match="2 job"):
        gpu.main(["run", "--dry-run", "--groups", "eps,classify", "--out",
                        str(tmp_path / "o")])
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert "out of memory" in res["jobs"]["eps"]["error"]
    assert res["jobs"]["allconv-tv-sharp"]["test"]["test"]["n"] == 20
    assert "FAILED" in (tmp_path / "o" / "log.txt").read_text()
    with tarfile.open(tmp_path / "o" / "weights-1.tar") as tar:
        assert len(tar.getnames()) == 3 + 1  # the classifiers and the manifest


def test_eps_pack_from_a_data_folder(tmp_path):
    """make_eps_pack: the first N photos of each split; a photo whose BSDS500 JPEG
    decodes to the folder's input is stored as that JPEG, else as its pixels."""
    import io

    from PIL import Image

    from tvcli.data.eps import FILTERS
    from tvcli.data.pack import decode_image
    from tvcli.learning.tasks.eps import load_eps_pack
    from tvcli.learning.train.gpu_data import _jpeg, _tiny_photos, make_eps_pack

    imgs = _tiny_photos(4, 12, 16, 7)
    recs = []
    for i, (split, stem) in enumerate([("train", "a"), ("train", "b"), ("val", "c"),
                                       ("test", "d")]):
        jpg = tmp_path / "bsds" / "images" / split / f"{stem}.jpg"
        jpg.parent.mkdir(parents=True, exist_ok=True)
        jpg.write_bytes(_jpeg(imgs[i]))
        # "b" has an input that is not its JPEG's decode: stored as pixels
        inp = decode_image(jpg.read_bytes()) if stem != "b" else imgs[i]
        d = tmp_path / "eps" / split
        (d / "input").mkdir(parents=True, exist_ok=True)
        Image.fromarray(inp.permute(1, 2, 0).numpy()).save(d / "input" / f"{stem}.png")
        (d / "gt" / stem).mkdir(parents=True, exist_ok=True)
        for k, f in enumerate(FILTERS):
            buf = io.BytesIO()
            Image.fromarray((inp // (k + 1)).permute(1, 2, 0).numpy()).save(buf, "PNG")
            (d / "gt" / stem / f"{f.name}.png").write_bytes(buf.getvalue())
        recs.append({"split": split, "stem": stem, "source": f"images/{split}/{stem}.jpg"})
    (tmp_path / "eps" / "manifest.json").write_text(json.dumps({"images": recs}))
    make_eps_pack(tmp_path / "eps", tmp_path / "bsds", tmp_path / "e.pack",
                  {"train": 2, "val": 1}, log=lambda _: None)
    train = load_eps_pack(tmp_path / "e.pack", "train")
    assert [s for s, _, _ in train] == ["a", "b"]
    assert torch.equal(train[1][1], imgs[1])  # the PNG's pixels, not the JPEG's
    assert train[0][2].shape == (len(FILTERS), 3, 12, 16)
    assert torch.equal(train[0][2][2], train[0][1] // 3)  # filter order kept
    with pytest.raises(FileNotFoundError):
        load_eps_pack(tmp_path / "e.pack", "test")  # not asked for
    meta, arrays = read_pack(tmp_path / "e.pack")
    header = json.loads((tmp_path / "e.pack").read_bytes()[16:16 + struct.unpack(
        "<Q", (tmp_path / "e.pack").read_bytes()[8:16])[0]])
    codec = {e["name"]: e.get("codec", "xz") for e in header["arrays"]}
    assert codec["train/input/a"] == "image" and codec["train/input/b"] == "xz"


def test_cifar10c_pack_is_evaluated_beside_the_archive(tmp_path):
    from tvcli.data.corruptions import CORRUPTIONS
    from tvcli.data.pack import clear_cache
    from tvcli.learning.tasks.classify import ClassifyTask
    from tvcli.learning.train.gpu_data import make_cifar10c_pack, tiny_packs
    from tvcli.models import build_model

    tiny_packs(tmp_path)
    hdr = make_cifar10c_pack(tmp_path / "cifar10.tar.gz", tmp_path / "cifar10c.pack", 1,
                             log=lambda _: None)
    n_c = len(CORRUPTIONS) - len(hdr["meta"]["skipped"])
    assert n_c >= 14
    torch.manual_seed(0)
    model = build_model("allconv", width=8)
    try:
        res = ClassifyTask.evaluate(model, tmp_path / "cifar10.tar.gz", torch.device("cpu"))
    finally:
        clear_cache()
    keys = [k for k in res if k.startswith("c/")]
    assert len(keys) == 5 * n_c and all(res[k]["n"] == 10 for k in keys)
    assert res["test"]["n"] == 20
    mean = sum(res[k]["top1"] for k in keys) / len(keys)
    assert abs(res["cifar10c"]["top1"] - mean) < 1e-9
