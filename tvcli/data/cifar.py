"""CIFAR-10 reader: the JPEG layout ``cifar10/{train,test}/<class>/NNNN.jpg``.

Reads straight from the ``.tar.gz`` (nothing unpacked) or from an unpacked folder
(the folder holding ``train/`` and ``test/``, or its parent holding ``cifar10/``).
Images come back as one uint8 tensor (N, 3, 32, 32) RGB plus int64 labels (N,),
sorted by (class, file name) so every run sees the same order.

Note: the JPEG copies differ from the original CIFAR-10 pixels (about 28-32 dB
PSNR), which matters most for noise and JPEG corruptions; say so next to results.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import torch

from tvcli.models.allconv import CIFAR10_CLASSES

__all__ = ["load_cifar10", "stratified_subset"]

_EXTS = (".jpg", ".jpeg", ".png")


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    if img.size != (32, 32):
        raise ValueError(f"expected 32x32 CIFAR images, got {img.size}")
    return np.asarray(img)


def _class_of(parts: tuple[str, ...], split: str) -> str | None:
    """The class folder of a path ``.../<split>/<class>/<file>``, else None."""
    if len(parts) >= 3 and parts[-3] == split and parts[-1].lower().endswith(_EXTS):
        return parts[-2]
    return None


def load_cifar10(path: str | Path, split: str = "train",
                 per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one split.

    Args:
        path: the ``.tar.gz``/``.tar`` or a folder (see module doc).
        split: "train" or "test".
        per_class: keep only the first ``per_class`` images of each class (by file
            name; for smoke runs and tests), None = all.

    Returns:
        (images uint8 (N, 3, 32, 32), labels int64 (N,)), class index as in
        :data:`CIFAR10_CLASSES`.
    """
    path = Path(path)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    items: list[tuple[int, str, bytes | Path]] = []
    if path.is_file():
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                cls = _class_of(tuple(m.name.split("/")), split)
                if cls is None:
                    continue
                if cls not in CIFAR10_CLASSES:
                    raise ValueError(f"unknown class folder {cls!r} in {path}")
                fh = tar.extractfile(m)
                assert fh is not None
                items.append((CIFAR10_CLASSES.index(cls), m.name.rsplit("/", 1)[-1],
                              fh.read()))
    elif path.is_dir():
        root = path / "cifar10" if (path / "cifar10" / split).is_dir() else path
        if not (root / split).is_dir():
            raise FileNotFoundError(f"{path} has no {split}/ folder of CIFAR-10 classes")
        for cls_dir in sorted((root / split).iterdir()):
            if not cls_dir.is_dir():
                continue
            if cls_dir.name not in CIFAR10_CLASSES:
                raise ValueError(f"unknown class folder {cls_dir.name!r} in {root / split}")
            for f in cls_dir.iterdir():
                if f.suffix.lower() in _EXTS:
                    items.append((CIFAR10_CLASSES.index(cls_dir.name), f.name, f))
    else:
        raise FileNotFoundError(f"no CIFAR-10 data at {path}")
    if not items:
        raise FileNotFoundError(f"no {split} images found in {path}")
    items.sort(key=lambda t: (t[0], t[1]))
    if per_class is not None:
        counts: dict[int, int] = {}
        kept = []
        for it in items:
            if counts.get(it[0], 0) < per_class:
                kept.append(it)
                counts[it[0]] = counts.get(it[0], 0) + 1
        items = kept
    arrays = [_decode(d if isinstance(d, bytes) else d.read_bytes()) for _, _, d in items]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([c for c, _, _ in items], dtype=torch.int64)
    return images, labels


def stratified_subset(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` samples of each class, in order."""
    keep = []
    for c in labels.unique().tolist():
        keep.append(torch.nonzero(labels == c).flatten()[:per_class])
    return torch.cat(keep).sort().values
