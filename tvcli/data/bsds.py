"""BSDS500 boundary ground truths and edge-training labels.

The data set is never part of tvcli: callers give the folder (e.g.
``../shared/data/bsds500`` with ``images/{train,val,test}/*.jpg`` and
``groundTruth/{train,val,test}/*.mat``; Arbelaez et al., TPAMI 2011).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_bsds_boundaries", "bsds_split", "consensus_label"]


def read_bsds_boundaries(path: str | Path) -> list[np.ndarray]:
    """The K human boundary maps of a BSDS ``.mat`` file.

    Args:
        path: a MATLAB file holding a 1 x K cell ``groundTruth`` of structs with
            a ``Boundaries`` field (BSDS300/500 layout).
    Returns:
        K (H, W) bool arrays.
    Raises:
        ValueError: unreadable file or not this layout (one-line message).
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except Exception as exc:  # scipy raises several types for bad files
        raise ValueError(f"{path}: not a readable MATLAB file ({str(exc).splitlines()[0]})") \
            from None
    gt = mat.get("groundTruth")
    if gt is None:
        raise ValueError(f"{path}: no 'groundTruth' variable (not a BSDS ground truth)")
    out = []
    try:
        for cell in np.asarray(gt).ravel():
            b = np.asarray(cell["Boundaries"][0, 0] if cell.dtype.names else cell)
            out.append(b.astype(bool))
    except (KeyError, IndexError, ValueError, TypeError):
        raise ValueError(f"{path}: 'groundTruth' has no 'Boundaries' field") from None
    if not out or any(b.ndim != 2 or b.shape != out[0].shape for b in out):
        raise ValueError(f"{path}: boundary maps missing or of different sizes")
    return out


def bsds_split(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, ground-truth .mat) pairs of one split (train, val or test), by
    file stem, sorted.

    Raises:
        FileNotFoundError: the split's folders are missing.
    """
    root = Path(root)
    img_dir, gt_dir = root / "images" / split, root / "groundTruth" / split
    if not img_dir.is_dir() or not gt_dir.is_dir():
        raise FileNotFoundError(f"{root}: no images/{split} and groundTruth/{split} folders "
                                "(expected the BSDS500 layout)")
    mats = {p.stem: p for p in gt_dir.glob("*.mat")}
    return [(p, mats[p.stem]) for p in sorted(img_dir.glob("*.jpg")) if p.stem in mats]


def consensus_label(boundaries: list[np.ndarray], positive: float = 0.5) -> np.ndarray:
    """Edge-training label from K annotators, as RCF (Liu et al. 2017) does.

    A pixel marked by at least ``positive`` of the annotators is an edge (1),
    one marked by nobody is background (0), one marked by some but fewer is
    ambiguous (``-1``: ignored by the loss, :func:`tvcli.learning.tasks.edges.balanced_bce`).

    Args:
        boundaries: K (H, W) bool maps.
        positive: the fraction of annotators that makes a pixel an edge (RCF: 0.5).
    Returns:
        (H, W) float32 in {-1, 0, 1}.
    """
    votes = np.mean(np.stack([np.asarray(b, bool) for b in boundaries]), axis=0)
    lab = np.where(votes >= positive, 1.0, np.where(votes > 0, -1.0, 0.0))
    return lab.astype(np.float32)
