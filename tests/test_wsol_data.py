"""``tvcli data wsol`` (the synthetic WSOL benchmark) and the wsolevaluation metadata
reader, on fixtures the tests write (tiny fake Fashion-MNIST and photo folders, and a
small CUB / OpenImages-style metadata tree)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tvcli.cli import app
from tvcli.data.wsol import (
    WsolDataError,
    build_wsol,
    load_wsol_images,
    load_wsol_masks,
    read_idx,
    read_wsol_split,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _idx(path: Path, array: np.ndarray) -> None:
    head = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + array.astype(np.uint8).tobytes())


def _fake_sources(root: Path, per_class: int = 6) -> tuple[Path, Path]:
    """A Fashion-MNIST folder (10 classes x per_class blobs) and a BSDS500-like folder."""
    rng = np.random.default_rng(0)
    fm = root / "fm"
    fm.mkdir()
    for part in ("train", "t10k"):
        n = 10 * per_class
        x = np.zeros((n, 28, 28), np.uint8)
        for i in range(n):  # a filled rectangle of random size: the silhouette
            h, w = rng.integers(8, 24, 2)
            y0, x0 = rng.integers(0, 28 - h), rng.integers(0, 28 - w)
            x[i, y0:y0 + h, x0:x0 + w] = 200
        _idx(fm / f"{part}-images-idx3-ubyte.gz", x)
        _idx(fm / f"{part}-labels-idx1-ubyte.gz", np.repeat(np.arange(10), per_class))
    bsds = root / "bsds"
    for part in ("train", "val", "test"):
        (bsds / "images" / part).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.uint8(rng.random((60, 80, 3)) * 255)).save(
                bsds / "images" / part / f"{k}.jpg")
    return fm, bsds


def test_read_idx_round_trip(tmp_path: Path) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "b").write_bytes(b"\x01\x02\x03")
    with pytest.raises(WsolDataError, match="IDX"):
        read_idx(tmp_path / "b")


def test_build_layout_manifest_and_exact_ground_truth(tmp_path: Path) -> None:
    fm, bsds = _fake_sources(tmp_path)
    out = tmp_path / "wsol"
    man = build_wsol(out, fm, bsds, size=48, train_per_class=2, val_per_class=1,
                     test_per_class=1, seed=3, log=lambda _m: None)
    assert json.loads((out / "manifest.json").read_text()) == man
    assert {s: v["images"] for s, v in man["splits"].items()} == {"train": 20, "val": 10,
                                                                  "test": 10}
    assert [v["seed"] for v in man["splits"].values()] == [3, 4, 5]
    assert len(man["sources"]["fashion_mnist"]["sha256"]) == 4
    assert not (out.parent / "wsol.tmp").exists()
    train = read_wsol_split(out, "train")
    assert not train.boxes and not train.masks  # labels only
    assert sorted(np.bincount(list(train.labels.values()))) == [2] * 10
    test = read_wsol_split(out, "test")
    for iid in test.image_ids:
        (box,) = test.boxes[iid]
        mask, ignore = load_wsol_masks(test, iid, (48, 48))
        ys, xs = np.nonzero(mask)
        assert box == (xs.min(), ys.min(), xs.max(), ys.max())  # the tight box of the mask
        assert not ignore.any()
        assert max(box[2] - box[0], box[3] - box[1]) + 1 <= 0.65 * 48 + 1
    x, y = load_wsol_images(test)
    assert x.shape == (10, 3, 48, 48) and x.dtype == np.uint8 and sorted(y) == list(range(10))
    # deterministic: the same seed gives the same files
    man2 = build_wsol(tmp_path / "again", fm, bsds, size=48, train_per_class=2,
                      val_per_class=1, test_per_class=1, seed=3, log=lambda _m: None)
    assert man2["digest"] == man["digest"]
    # never overwritten
    with pytest.raises(WsolDataError, match="not empty"):
        build_wsol(out, fm, bsds, size=48, log=lambda _m: None)


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    res = CliRunner().invoke(app, ["data", "wsol", str(tmp_path / "o"), "--fashion-mnist",
                                   str(tmp_path / "none"), "--bsds500", str(tmp_path / "b")])
    assert res.exit_code != 0
    msg = res.output + str(res.exception or "")
    assert len(msg.strip().splitlines()) == 1
    assert "no such file" in msg and "Traceback" not in msg
    assert not (tmp_path / "o").exists()


def _write(p: Path, rows: list[str]) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(rows) + "\n")


def test_reader_wsolevaluation_boxes_and_masks(tmp_path: Path) -> None:
    """CUB / ImageNet style (several boxes per image) and OpenImages style (several
    masks plus an ignore mask per image), as wsolevaluation's metadata lays them out."""
    root = tmp_path / "CUB"
    md = root / "metadata"
    a, b = "001.Black_footed_Albatross/a_0001.jpg", "002.Laysan_Albatross/b_0002.jpg"
    _write(md / "test" / "image_ids.txt", [a, b])
    _write(md / "test" / "class_labels.txt", [f"{a},0", f"{b},1"])
    _write(md / "test" / "image_sizes.txt", [f"{a},500,333", f"{b},64,48"])
    _write(md / "test" / "localization.txt", [f"{a},10,20,110,220", f"{a},0,0,5,5",
                                              f"{b},1,2,63,47"])
    s = read_wsol_split(root, "test")
    assert s.image_ids == [a, b] and s.labels == {a: 0, b: 1} and s.num_classes == 2
    assert s.sizes[a] == (500, 333)
    assert s.boxes[a] == [(10, 20, 110, 220), (0, 0, 5, 5)]
    # the alias train-fullsup reads val/
    _write(md / "val" / "image_ids.txt", [a])
    _write(md / "val" / "class_labels.txt", [f"{a},0"])
    assert read_wsol_split(root, "train-fullsup").split == "val"
    # OpenImages: localization.txt holds masks
    oi = tmp_path / "OpenImages"
    img = "test/x/img1.jpg"
    _write(oi / "metadata" / "test" / "image_ids.txt", [img])
    _write(oi / "metadata" / "test" / "class_labels.txt", [f"{img},5"])
    _write(oi / "metadata" / "test" / "localization.txt",
           [f"{img},test/mask/m1.png,test/ignore/i1.png", f"{img},test/mask/m2.png,"])
    for name, box in (("mask/m1.png", (0, 0, 4, 4)), ("mask/m2.png", (6, 6, 8, 8)),
                      ("ignore/i1.png", (0, 8, 9, 9))):
        m = np.zeros((10, 10), np.uint8)
        m[box[1]:box[3], box[0]:box[2]] = 255
        (oi / "test" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(oi / "test" / name)
    s = read_wsol_split(oi, "test")
    assert s.masks[img] == ["test/mask/m1.png", "test/mask/m2.png"]
    assert s.ignore[img] == "test/ignore/i1.png"
    mask, ignore = load_wsol_masks(s, img, (10, 10))
    assert mask.sum() == 16 + 4 and ignore.sum() == 9


@pytest.mark.parametrize("rows, match", [
    (["x.jpg,1,2,3"], "expected id,x0,y0,x1,y1"),
    (["x.jpg,5,5,2,2"], "not x0<=x1"),
    (["x.jpg,0,0,64,10"], "outside the 64x48 image"),
    (["y.jpg,0,0,1,1"], "not in image_ids"),
])
def test_reader_rejects_bad_lines(tmp_path: Path, rows: list[str], match: str) -> None:
    md = tmp_path / "metadata" / "test"
    _write(md / "image_ids.txt", ["x.jpg"])
    _write(md / "class_labels.txt", ["x.jpg,0"])
    _write(md / "image_sizes.txt", ["x.jpg,64,48"])
    _write(md / "localization.txt", rows)
    with pytest.raises(WsolDataError, match=match):
        read_wsol_split(tmp_path, "test")


def test_reader_missing_files(tmp_path: Path) -> None:
    with pytest.raises(WsolDataError, match="image_ids.txt: no such file"):
        read_wsol_split(tmp_path, "test")
    _write(tmp_path / "metadata" / "test" / "image_ids.txt", ["a.jpg", "b.jpg"])
    _write(tmp_path / "metadata" / "test" / "class_labels.txt", ["a.jpg,0"])
    with pytest.raises(WsolDataError, match="no label for 1 image ids"):
        read_wsol_split(tmp_path, "test")
    with pytest.raises(WsolDataError, match="unknown split"):
        read_wsol_split(tmp_path, "dev")


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir() or not (SHARED / "bsds500").is_dir(),
                    reason="needs ../shared/data/fashion-mnist and bsds500")
def test_build_from_shared_data(tmp_path: Path) -> None:
    man = build_wsol(tmp_path / "w", SHARED / "fashion-mnist", SHARED / "bsds500", size=64,
                     train_per_class=1, val_per_class=1, test_per_class=1,
                     log=lambda _m: None)
    assert man["sources"]["bsds500"]["test_photos"] == 200
    s = read_wsol_split(tmp_path / "w", "val")
    assert len(s.image_ids) == 10 and all(len(s.boxes[i]) == 1 for i in s.image_ids)
