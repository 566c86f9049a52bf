"""Weakly supervised object localization (WSOL) data: a synthetic benchmark with exact
ground truth, and a reader for Choe et al.'s ``wsolevaluation`` metadata.

**The synthetic benchmark is a substitute for CUB-200-2011 / ImageNet / OpenImages**,
which are not available here (and too large to train on with CPUs). ``tvcli data
wsol OUT --fashion-mnist PATH --bsds500 PATH`` (:func:`build_wsol`) pastes one
Fashion-MNIST object (Xiao et al. 2017, 10 classes) into each photo background (a
random crop of a BSDS500 photo): the 28x28 silhouette is scaled to 30-65 % of the
image side, placed at random, and its pixels are filled with a tinted texture (a
crop of another photo, multiplied by a random colour and by the silhouette's own
shading), so the object is not separable by intensity or colour alone. The
silhouette (grey > :data:`MASK_LEVEL` after bilinear scaling) is the exact mask,
its bounding box the tight box; the label is the Fashion-MNIST class.

Splits as in Choe et al. (CVPR 2020): ``train`` (class labels only), ``val`` (their
"train-fullsup": a few images per class with boxes and masks, for choosing
hyper-parameters and the CAM threshold) and ``test``. Objects of train and val
come from disjoint parts of Fashion-MNIST's training set, test objects from its
t10k set; backgrounds of train / val from BSDS500 train+val photos, of test from
its test photos. All randomness comes from one seed per split.

Layout written (the ``wsolevaluation`` layout, so that one reader serves both)::

    OUT/manifest.json                       sources (sha256), seeds, sizes, counts, digests
    OUT/images/<split>/<NNNNN>.png          RGB, SIZE x SIZE, 8-bit
    OUT/masks/<split>/<NNNNN>.png           0 / 255 object masks (val, test)
    OUT/metadata/<split>/image_ids.txt      one image id (path relative to OUT) per line
    OUT/metadata/<split>/class_labels.txt   ``image_id,label``
    OUT/metadata/<split>/image_sizes.txt    ``image_id,width,height``
    OUT/metadata/<split>/localization.txt   ``image_id,x0,y0,x1,y1`` (val, test)
    OUT/metadata/<split>/masks.txt          ``image_id,mask_path,ignore_path`` (val, test)

Boxes are inclusive pixel coordinates ``x0 <= x1``, ``y0 <= y1`` (as wsolevaluation).

The reader (:func:`read_wsol_split`) takes a data root whose ``metadata/`` folder
holds ``train/``, ``val/``, ``test/`` in that layout: wsolevaluation's
``metadata/CUB``, ``metadata/ILSVRC`` or ``metadata/OpenImages`` placed (or
symlinked) as ``<dataset root>/metadata``. Its ``localization.txt`` holds boxes
(CUB, ImageNet: ``id,x0,y0,x1,y1``, one line per box) or masks (OpenImages:
``id,mask_path,ignore_path``, one line per mask); tvcli's own ``masks.txt`` adds
masks beside boxes. Image ids and mask paths are relative to the data root.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvcli._hashing import sha256_file

__all__ = ["FASHION_CLASSES", "MASK_LEVEL", "SPLITS", "WsolDataError", "WsolSplit",
           "build_wsol", "load_wsol_images", "load_wsol_masks", "pack_arrays",
           "read_idx", "read_wsol_split", "split_dir", "split_from_arrays"]

FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle-boot")
#: grey level (0-1, after bilinear scaling of the 28x28 silhouette) above which a pixel
#: belongs to the object
MASK_LEVEL = 0.2
#: the splits and their aliases (Choe et al. call "val" train-fullsup)
SPLITS = ("train", "val", "test")
_ALIASES = {"train-fullsup": "val", "trainfullsup": "val", "fullsup": "val"}


class WsolDataError(ValueError):
    """WSOL data or metadata that cannot be read (one line naming the file and cause)."""


def split_dir(split: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a split name or alias (train-fullsup)."""
    s = _ALIASES.get(split, split)
    if s not in SPLITS:
        raise WsolDataError(f"unknown split {split!r}; known: train, val (train-fullsup), "
                            "test")
    return s


# ------------------------------------------------------------------ metadata reader


@dataclass
class WsolSplit:
    """One split of a WSOL benchmark in the wsolevaluation layout.

    ``image_ids``: paths relative to ``root``; ``labels``: id -> class index;
    ``sizes``: id -> (width, height) in pixels of the stored image; ``boxes``:
    id -> list of inclusive (x0, y0, x1, y1) in those pixels; ``masks``: id -> list
    of mask paths (relative to ``root``; union of all, > 127 = object);
    ``ignore``: id -> an ignore-mask path or None (> 127 = not scored).
    """

    root: Path
    split: str
    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    masks: dict[str, list[str]] = field(default_factory=dict)
    ignore: dict[str, str | None] = field(default_factory=dict)
    #: id -> (H, W) bool mask held in memory (a GPU run's pack; used before ``masks``)
    mask_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1 if self.labels else 0


def _lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise WsolDataError(f"{path}: not readable ({exc})") from None
    return [[f.strip() for f in ln.split(",")] for ln in text.splitlines() if ln.strip()]


def _ints(path: Path, row: list[str], n: int, lineno: int) -> list[int]:
    try:
        vals = [int(round(float(v))) for v in row[1:1 + n]]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise WsolDataError(f"{path}:{lineno}: expected {n} numbers after the image id, "
                            f"got {','.join(row[1:])!r}")
    return vals


def read_wsol_split(root: str | Path, split: str, metadata: str | Path | None = None
                    ) -> WsolSplit:
    """Reads one split of the wsolevaluation layout (see the module docstring).

    Args:
        root: the data root (image ids and mask paths are relative to it).
        split: ``train``, ``val`` (alias ``train-fullsup``) or ``test``.
        metadata: the folder holding ``train/``, ``val/``, ``test/`` (default
            ``root/metadata``).
    Raises:
        WsolDataError: a missing file, a malformed line, a label or size missing
        for an image id, or a box outside its image (one line naming file and line).
    """
    root = Path(root)
    s = split_dir(split)
    mdir = (Path(metadata) if metadata else root / "metadata") / s
    ids_path = mdir / "image_ids.txt"
    if not ids_path.is_file():
        raise WsolDataError(f"{ids_path}: no such file (expected wsolevaluation metadata: "
                            f"metadata/{{train,val,test}}/image_ids.txt under {root})")
    ids = [r[0] for r in _lines(ids_path)]
    if not ids:
        raise WsolDataError(f"{ids_path}: no image ids")
    if len(set(ids)) != len(ids):
        raise WsolDataError(f"{ids_path}: repeated image ids")
    known = set(ids)
    labels: dict[str, int] = {}
    lab_path = mdir / "class_labels.txt"
    if not lab_path.is_file():
        raise WsolDataError(f"{lab_path}: no such file")
    for i, row in enumerate(_lines(lab_path), 1):
        (lab,) = _ints(lab_path, row, 1, i)
        if lab < 0:
            raise WsolDataError(f"{lab_path}:{i}: negative class label {lab}")
        labels[row[0]] = lab
    missing = [i for i in ids if i not in labels]
    if missing:
        raise WsolDataError(f"{lab_path}: no label for {len(missing)} image ids "
                            f"(first {missing[0]!r})")
    out = WsolSplit(root=root, split=s, image_ids=ids, labels=labels)
    size_path = mdir / "image_sizes.txt"
    if size_path.is_file():
        for i, row in enumerate(_lines(size_path), 1):
            w, h = _ints(size_path, row, 2, i)
            if w < 1 or h < 1:
                raise WsolDataError(f"{size_path}:{i}: image size {w}x{h}")
            out.sizes[row[0]] = (w, h)
    loc_files = [p for p in (mdir / "localization.txt", mdir / "masks.txt") if p.is_file()]
    for loc in loc_files:
        for i, row in enumerate(_lines(loc), 1):
            if row[0] not in known:
                raise WsolDataError(f"{loc}:{i}: image id {row[0]!r} is not in image_ids.txt")
            if loc.name == "localization.txt" and len(row) == 5:
                x0, y0, x1, y1 = _ints(loc, row, 4, i)
                if x1 < x0 or y1 < y0 or x0 < 0 or y0 < 0:
                    raise WsolDataError(f"{loc}:{i}: box {x0},{y0},{x1},{y1} is not x0<=x1, "
                                        "y0<=y1, >= 0")
                if row[0] in out.sizes:
                    w, h = out.sizes[row[0]]
                    if x1 >= w or y1 >= h:
                        raise WsolDataError(f"{loc}:{i}: box {x0},{y0},{x1},{y1} outside the "
                                            f"{w}x{h} image")
                out.boxes.setdefault(row[0], []).append((x0, y0, x1, y1))
            elif len(row) in (2, 3) and row[1]:
                out.masks.setdefault(row[0], []).append(row[1])
                ign = row[2] if len(row) == 3 and row[2] else None
                if ign is not None or row[0] not in out.ignore:
                    out.ignore[row[0]] = ign
            else:
                raise WsolDataError(f"{loc}:{i}: expected id,x0,y0,x1,y1 (a box) or "
                                    f"id,mask_path,ignore_path (a mask), got {','.join(row)!r}")
    return out


def _read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (Pillow)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise WsolDataError(f"{path}: not a readable image ({exc})") from None


def load_wsol_images(split: WsolSplit, size: int | None = None, limit: int | None = None,
                     step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of a split.

    Args:
        size: resize every image to ``size`` x ``size`` (bilinear, Pillow); None keeps
            them as stored (they must then be of one size).
        limit: only the first ``limit`` ids (after ``step``); ``step``: every step-th id.
    Returns:
        images (N, 3, H, W) uint8, labels (N,) int64.
    """
    from PIL import Image

    ids = split.image_ids[::step][:limit]
    imgs = []
    for i in ids:
        a = _read_image(split.root / i)
        if size is not None and a.shape[:2] != (size, size):
            a = np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))
        imgs.append(a)
    shapes = {a.shape for a in imgs}
    if len(shapes) != 1:
        raise WsolDataError(f"{split.root}: images of several sizes {sorted(shapes)[:2]}; "
                            "give a size to resize them")
    x = np.stack(imgs).transpose(0, 3, 1, 2).copy()
    y = np.array([split.labels[i] for i in ids], dtype=np.int64)
    return x, y


def load_wsol_masks(split: WsolSplit, image_id: str, shape: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask, ignore) of an image as bool (H, W) arrays at ``shape`` = (H, W) (nearest
    resizing), the union of its masks; None when it has no mask."""
    from PIL import Image

    h, w = shape
    if image_id in split.mask_arrays:
        m = split.mask_arrays[image_id]
        if m.shape != (h, w):
            m = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((w, h), Image.NEAREST))
        return m > 0, np.zeros((h, w), bool)
    paths = split.masks.get(image_id)
    if not paths:
        return None

    def load(p: str) -> np.ndarray:
        try:
            with Image.open(split.root / p) as im:
                m = im.convert("L").resize((w, h), Image.NEAREST)
        except (OSError, ValueError) as exc:
            raise WsolDataError(f"{split.root / p}: not a readable mask ({exc})") from None
        return np.asarray(m) > 127

    mask = np.zeros((h, w), bool)
    for p in paths:
        mask |= load(p)
    ign = split.ignore.get(image_id)
    ignore = load(ign) if ign else np.zeros((h, w), bool)
    return mask, ignore


def pack_arrays(split: WsolSplit, images: np.ndarray, labels: np.ndarray
                ) -> dict[str, np.ndarray]:
    """A split as uint8 arrays for a pack (:mod:`tvcli.data.pack`):
    ``<s>/images`` (N, 3, H, W), ``<s>/labels`` (N,), and where the split has them
    ``<s>/boxes`` (N, 4, 2) -- the first box of each image, inclusive x0, y0, x1, y1 in
    the images' pixels, as (value // 256, value % 256) -- and ``<s>/masks`` (N, H, W)
    0 / 1. ``images`` / ``labels`` as :func:`load_wsol_images` gives them."""
    s = split.split
    n, _, h, w = images.shape
    if labels.max(initial=0) > 255:
        raise WsolDataError(f"{split.root}: class labels > 255 do not fit a pack")
    out = {f"{s}/images": images, f"{s}/labels": labels.astype(np.uint8)}
    ids = split.image_ids[:n]
    if split.boxes:
        b = np.zeros((n, 4), np.int64)
        for i, iid in enumerate(ids):
            sw, sh = split.sizes.get(iid, (w, h))
            x0, y0, x1, y1 = split.boxes[iid][0]
            b[i] = (int(x0 * w / sw), int(y0 * h / sh), min(w - 1, int(x1 * w / sw)),
                    min(h - 1, int(y1 * h / sh)))
        out[f"{s}/boxes"] = np.stack([b // 256, b % 256], -1).astype(np.uint8)
    if split.masks or split.mask_arrays:
        m = np.zeros((n, h, w), np.uint8)
        for i, iid in enumerate(ids):
            mk = load_wsol_masks(split, iid, (h, w))
            if mk is not None:
                m[i] = mk[0]
        out[f"{s}/masks"] = m
    return out


def split_from_arrays(arrays: dict, split: str, root: str | Path = "<pack>"
                      ) -> tuple[WsolSplit, np.ndarray, np.ndarray]:
    """The inverse of :func:`pack_arrays`: (split, images (N, 3, H, W) uint8, labels (N,)
    int64) from a pack's arrays (numpy or torch)."""
    s = split_dir(split)
    if f"{s}/images" not in arrays:
        raise WsolDataError(f"{root}: no {s}/images in the pack")
    images = np.asarray(arrays[f"{s}/images"])
    labels = np.asarray(arrays[f"{s}/labels"]).astype(np.int64)
    n, _, h, w = images.shape
    ids = [f"{s}/{i:05d}" for i in range(n)]
    out = WsolSplit(root=Path(root), split=s, image_ids=ids,
                    labels={iid: int(c) for iid, c in zip(ids, labels, strict=True)},
                    sizes={iid: (w, h) for iid in ids})
    if f"{s}/boxes" in arrays:
        b = np.asarray(arrays[f"{s}/boxes"]).astype(np.int64)
        b = b[..., 0] * 256 + b[..., 1]
        out.boxes = {iid: [tuple(int(v) for v in b[i])] for i, iid in enumerate(ids)}
    if f"{s}/masks" in arrays:
        m = np.asarray(arrays[f"{s}/masks"])
        out.mask_arrays = {iid: m[i] > 0 for i, iid in enumerate(ids)}
        out.masks = {iid: ["<pack>"] for iid in ids}
    return out, images, labels


# ------------------------------------------------------------- synthetic benchmark


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (Fashion-MNIST / MNIST format, optionally gzipped) as a uint8 array:
    (N, 28, 28) images or (N,) labels."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise WsolDataError(f"{path}: not readable ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 8:
        raise WsolDataError(f"{path}: not an unsigned-byte IDX file")
    nd = raw[3]
    dims = struct.unpack(f">{nd}I", raw[4:4 + 4 * nd])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise WsolDataError(f"{path}: {data.size} bytes of data for shape {dims}")
    return data.reshape(dims)


def _fashion(path: Path, part: str) -> tuple[np.ndarray, np.ndarray, dict]:
    imgs_p = path / f"{part}-images-idx3-ubyte.gz"
    labs_p = path / f"{part}-labels-idx1-ubyte.gz"
    for p in (imgs_p, labs_p):
        if not p.is_file():
            raise WsolDataError(f"{p}: no such file (--fashion-mnist must hold the four "
                                "Fashion-MNIST .gz files)")
    x, y = read_idx(imgs_p), read_idx(labs_p)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise WsolDataError(f"{path}: {part} images {x.shape} and labels {y.shape} differ")
    return x, y, {imgs_p.name: sha256_file(imgs_p), labs_p.name: sha256_file(labs_p)}


def _backgrounds(bsds: Path, parts: tuple[str, ...]) -> list[Path]:
    files = sorted(p for part in parts for p in (bsds / "images" / part).glob("*.jpg"))
    if not files:
        raise WsolDataError(f"{bsds}: no images/{{{','.join(parts)}}}/*.jpg (--bsds500 must be "
                            "the BSDS500 folder)")
    return files


def _crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (side 50-100 % of the shorter side) of ``photo``, resized to
    ``size`` and flipped left-right with probability 1/2: (size, size, 3) float32 0-1."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    im = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32) / 255.0
    return a[:, ::-1] if rng.random() < 0.5 else a


def _scale_silhouette(grey: np.ndarray, side: int) -> np.ndarray:
    """The 28x28 uint8 silhouette scaled to side x side, float32 0-1 (bilinear)."""
    from PIL import Image

    im = Image.fromarray(grey).resize((side, side), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def compose(background: np.ndarray, texture: np.ndarray, grey: np.ndarray, side: int,
            y: int, x: int, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pastes one object into a background.

    Args:
        background, texture: (S, S, 3) float32 0-1.
        grey: (28, 28) uint8 Fashion-MNIST silhouette; ``side``: its scaled side in
            pixels; (``y``, ``x``): its top-left corner (the square must fit in S).
        colour: (3,) float32 0-1 tint of the texture.
    Returns:
        image (S, S, 3) uint8, mask (S, S) bool (grey > MASK_LEVEL after scaling).
    """
    s = background.shape[0]
    g = _scale_silhouette(grey, side)
    m = np.zeros((s, s), bool)
    m[y:y + side, x:x + side] = g > MASK_LEVEL
    shade = np.zeros((s, s), np.float32)
    shade[y:y + side, x:x + side] = g
    fill = (0.35 + 0.65 * texture * colour) * (0.45 + 0.55 * shade[..., None])
    img = np.where(m[..., None], np.clip(fill, 0, 1), background)
    return np.round(img * 255).astype(np.uint8), m


def _mask_box(m: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(m)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, optimize=False, compress_level=6)


def build_wsol(out: str | Path, fashion_mnist: str | Path, bsds500: str | Path, *,
               size: int = 128, train_per_class: int = 400, val_per_class: int = 10,
               test_per_class: int = 50, seed: int = 0, log=print) -> dict:
    """Builds the synthetic WSOL benchmark into ``out`` (see the module docstring).

    Written to a temporary folder beside ``out`` and renamed when complete; an
    existing non-empty ``out`` is an error (never overwritten).

    Args:
        size: image side in pixels (>= 32). ``*_per_class``: images per class and
            split (val = train-fullsup). ``seed``: split s uses seed + index of s.
    Returns:
        the manifest (also ``out/manifest.json``).
    """
    out, fm, bsds = Path(out), Path(fashion_mnist), Path(bsds500)
    if size < 32:
        raise WsolDataError(f"--size must be >= 32 pixels, got {size}")
    counts = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
    if any(c < 1 for c in counts.values()):
        raise WsolDataError(f"images per class must be >= 1, got {counts}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WsolDataError(f"{out} exists and is not empty (never overwritten); choose a "
                            "new folder")
    for p in (fm, bsds):
        if out.resolve() == p.resolve() or p.resolve() in out.resolve().parents:
            raise WsolDataError(f"{out} lies in an input folder ({p}); choose another")
    xtr, ytr, fm_sha = _fashion(fm, "train")
    xte, yte, fm_sha2 = _fashion(fm, "t10k")
    fm_sha.update(fm_sha2)
    bg_trainval = _backgrounds(bsds, ("train", "val"))
    bg_test = _backgrounds(bsds, ("test",))
    # Object pools: train and val from disjoint halves of Fashion-MNIST train (per class
    # the first 80 % / last 20 % of its indices), test from t10k.
    pools: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in range(10):
        idx = np.nonzero(ytr == c)[0]
        cut = int(0.8 * len(idx))
        pools["train"].append(idx[:cut])
        pools["val"].append(idx[cut:])
        pools["test"].append(np.nonzero(yte == c)[0])
    need = {s: counts[s] for s in SPLITS}
    for s in SPLITS:
        short = min(len(p) for p in pools[s])
        if need[s] > short:
            raise WsolDataError(f"{need[s]} {s} images per class asked for, but only {short} "
                                "objects of one class are available for that split")
    from PIL import Image

    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    photo_cache: dict[Path, np.ndarray] = {}

    def photo(p: Path) -> np.ndarray:
        if p not in photo_cache:
            with Image.open(p) as im:
                photo_cache[p] = np.asarray(im.convert("RGB"))
        return photo_cache[p]

    split_info = {}
    try:
        for si, s in enumerate(SPLITS):
            rng = np.random.default_rng(seed + si)
            src_x = xte if s == "test" else xtr
            bgs = bg_test if s == "test" else bg_trainval
            (tmp / "images" / s).mkdir(parents=True)
            (tmp / "metadata" / s).mkdir(parents=True)
            if s != "train":
                (tmp / "masks" / s).mkdir(parents=True)
            # class-balanced, shuffled order of (class, object index)
            order = [(c, int(i)) for c in range(10)
                     for i in rng.choice(pools[s][c], counts[s], replace=False)]
            perm = rng.permutation(len(order))
            ids, labs, sizes, locs, masks = [], [], [], [], []
            for n, k in enumerate(perm):
                c, obj = order[k]
                bg = _crop(photo(bgs[int(rng.integers(len(bgs)))]), size, rng)
                tex = _crop(photo(bgs[int(rng.integers(len(bgs)))]), size, rng)
                side = int(rng.integers(int(0.30 * size), int(0.65 * size) + 1))
                y = int(rng.integers(0, size - side + 1))
                x = int(rng.integers(0, size - side + 1))
                colour = rng.uniform(0.15, 1.0, 3).astype(np.float32)
                img, m = compose(bg, tex, src_x[obj], side, y, x, colour)
                iid = f"images/{s}/{n:05d}.png"
                _write_png(tmp / iid, img)
                ids.append(iid)
                labs.append(f"{iid},{c}")
                sizes.append(f"{iid},{size},{size}")
                if s != "train":
                    mid = f"masks/{s}/{n:05d}.png"
                    _write_png(tmp / mid, (m * 255).astype(np.uint8))
                    x0, y0, x1, y1 = _mask_box(m)
                    locs.append(f"{iid},{x0},{y0},{x1},{y1}")
                    masks.append(f"{iid},{mid},")
            md = tmp / "metadata" / s
            files = {"image_ids.txt": ids, "class_labels.txt": labs,
                     "image_sizes.txt": sizes}
            if s != "train":
                files.update({"localization.txt": locs, "masks.txt": masks})
            for name, rows in files.items():
                (md / name).write_text("\n".join(rows) + "\n")
            h = hashlib.sha256()
            for p in sorted((tmp / "images" / s).iterdir()):
                h.update(f"{p.name}\t{sha256_file(p)}\n".encode())
            if s != "train":
                for p in sorted((tmp / "masks" / s).iterdir()):
                    h.update(f"masks/{p.name}\t{sha256_file(p)}\n".encode())
            split_info[s] = {"images": len(ids), "per_class": counts[s], "seed": seed + si,
                             "objects_from": "t10k" if s == "test" else
                             ("train, first 80 % of each class" if s == "train"
                              else "train, last 20 % of each class"),
                             "backgrounds_from": "BSDS500 test" if s == "test"
                             else "BSDS500 train+val",
                             "files_sha256": h.hexdigest(),
                             "metadata_sha256": {n: sha256_file(md / n) for n in sorted(files)}}
            log(f"{s}: {len(ids)} images")
        digest = hashlib.sha256(json.dumps(split_info, sort_keys=True).encode()).hexdigest()
        manifest = {
            "benchmark": "tvcli synthetic WSOL (Fashion-MNIST objects on BSDS500 photo "
                         "backgrounds); a substitute for CUB / ImageNet, see docs/wsol.md",
            "size": size, "classes": list(FASHION_CLASSES), "seed": seed,
            "mask_level": MASK_LEVEL, "object_side": [int(0.30 * size), int(0.65 * size)],
            "box_convention": "x0,y0,x1,y1 inclusive pixels",
            "splits": split_info, "digest": digest,
            "sources": {"fashion_mnist": {"path": str(fm), "sha256": fm_sha,
                                          "licence": "MIT (Xiao, Rasul, Vollgraf 2017)"},
                        "bsds500": {"path": str(bsds),
                                    "trainval_photos": len(bg_trainval),
                                    "test_photos": len(bg_test),
                                    "licence": "research use (Arbelaez et al. 2011)"}},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
