"""Weakly supervised object localization metrics, as Choe et al. (CVPR 2020,
"Evaluating Weakly Supervised Object Localization Methods Right", ``wsolevaluation``).

* **MaxBoxAccV2** (:class:`BoxAccumulator`): a class activation map (CAM) is min-max
  normalised to [0, 1], quantised to 8 bits, and thresholded at every value of a
  grid (default 0, 0.01, ..., 0.99); at each threshold the bounding box of every
  contour of the binary map is a candidate (``multi_contour``; else the largest
  contour only), and an image counts as localised at IoU delta when its best
  candidate reaches IoU >= delta with a ground-truth box. BoxAcc(t, delta) is the
  fraction localised; MaxBoxAccV2 is the mean over delta in {30, 50, 70} % of
  max_t BoxAcc(t, delta) (each delta picks its own best threshold).
* **PxAP** (:class:`MaskAccumulator`): the area under the pixel precision-recall
  curve of the normalised CAM against the object masks, over the threshold grid,
  pooled over all pixels of the set (ignore-mask pixels not scored).
* **top-1 localization / top-1 classification** (:class:`BoxAccumulator` with
  ``correct``): top-1 loc counts an image when its predicted class is right **and**
  the box at a given CAM threshold reaches IoU >= 50 %; the threshold is chosen on
  another split (train-fullsup) in tvcli's protocol.

Contours: with OpenCV installed (``cv2``), boxes are computed exactly as the
reference code does (``cv2.threshold`` at ``int(t * max)``, ``cv2.findContours``
with ``RETR_TREE`` and ``CHAIN_APPROX_SIMPLE``, ``cv2.boundingRect``, and its box
``(x, y, min(x + w, W - 1), min(y + h, H - 1))``, i.e. one pixel wider than the
contour, as the reference). Without OpenCV the same boxes come from SciPy: 8-connected
components of the map (outer contours) and 4-connected holes inside them (inner
contours, traced along the foreground pixels around the hole: the hole's box grown by
one pixel on every side, then reported as OpenCV's ``x + w``); OpenCV is the reference
and ``tests/test_wsol_metrics.py`` checks that both agree on random maps.

Boxes are (x0, y0, x1, y1) in inclusive pixel coordinates; IoU counts pixels
inclusively (``x1 - x0 + 1`` wide), as the reference. This module is engine side: it
imports nothing from tvcli's training side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["IOU_THRESHOLDS", "BoxAccumulator", "MaskAccumulator", "boxes_from_cam",
           "cam_thresholds", "iou_matrix", "normalize_cam"]

#: IoU deltas of MaxBoxAccV2, percent
IOU_THRESHOLDS = (30, 50, 70)


def cam_thresholds(interval: float = 0.01) -> np.ndarray:
    """The CAM threshold grid ``0, interval, ..., < 1`` (float64), as the reference."""
    if not 0 < interval < 1:
        raise ValueError(f"CAM threshold interval must be in (0, 1), got {interval!r}")
    return np.arange(0, 1, interval)


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """(H, W) map -> float64 in [0, 1]: minus its minimum, divided by its new maximum
    (all zeros for a constant map). NaN or inf -> ValueError."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"a CAM must be 2-D (H, W), got shape {cam.shape}")
    if not np.isfinite(cam).all():
        raise ValueError("the CAM holds NaN or inf")
    cam = cam - cam.min()
    top = cam.max()
    return cam / top if top > 0 else cam


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (Na, 4) with every box of ``b`` (Nb, 4), inclusive pixel
    boxes (x0, y0, x1, y1): (Na, Nb) float64 (0 where the union is empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _boxes_cv2(binary: np.ndarray, multi_contour: bool, cv2) -> np.ndarray:
    h, w = binary.shape
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return np.zeros((1, 4), np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    out = []
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        out.append((x, y, min(x + bw, w - 1), min(y + bh, h - 1)))
    return np.asarray(out, np.int64)


def _boxes_scipy(binary: np.ndarray, multi_contour: bool) -> np.ndarray:
    from scipy import ndimage

    h, w = binary.shape
    fg = binary > 0
    lab, n = ndimage.label(fg, structure=np.ones((3, 3), int))
    if n == 0:
        return np.zeros((1, 4), np.int64)
    boxes, areas = [], []
    for i, sl in enumerate(ndimage.find_objects(lab), 1):
        ys, xs = sl
        boxes.append((xs.start, ys.start, min(xs.stop, w - 1), min(ys.stop, h - 1)))
        comp = lab[sl] == i
        areas.append(comp.sum())
        if multi_contour:
            # holes: 4-connected background regions inside the component's box that do
            # not reach the box's border
            holes = ndimage.binary_fill_holes(comp) & ~comp
            hl, hn = ndimage.label(holes)
            for hs in ndimage.find_objects(hl):
                hy, hx = hs
                x0, y0 = xs.start + hx.start - 1, ys.start + hy.start - 1
                # the contour's last pixel is hx.stop (one past the hole); the box's
                # x1 is one past that (x + w), as for outer contours
                x1, y1 = xs.start + hx.stop + 1, ys.start + hy.stop + 1
                boxes.append((x0, y0, min(x1, w - 1), min(y1, h - 1)))
    if not multi_contour:
        boxes = [boxes[int(np.argmax(areas))]]
    return np.asarray(boxes, np.int64)


def boxes_from_cam(cam: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None,
                   multi_contour: bool = True, backend: str = "auto") -> list[np.ndarray]:
    """Candidate boxes of a CAM at each threshold of the grid.

    Args:
        cam: (H, W) map, normalised here (:func:`normalize_cam`), then quantised to
            uint8 as ``(cam * 255).astype(uint8)``.
        thresholds: the grid in [0, 1) (default :func:`cam_thresholds`).
        multi_contour: a box per contour (Choe et al.'s MaxBoxAccV2) or the largest
            contour's box only.
        backend: ``"cv2"``, ``"scipy"`` or ``"auto"`` (OpenCV when installed).
    Returns:
        one (K, 4) int64 array of inclusive boxes per threshold (K >= 1; a map with
        nothing above the threshold gives the one box (0, 0, 0, 0), as the reference).
    """
    thresholds = cam_thresholds() if thresholds is None else np.asarray(thresholds, float)
    u8 = (normalize_cam(cam) * 255).astype(np.uint8)
    top = int(u8.max())
    cv2 = _cv2() if backend in ("auto", "cv2") else None
    if backend == "cv2" and cv2 is None:
        raise ImportError("OpenCV (cv2) is not installed: pip install 'tvcli[wsol]' "
                          "(opencv-contrib-python-headless)")
    if backend not in ("auto", "cv2", "scipy"):
        raise ValueError(f"backend must be auto, cv2 or scipy, got {backend!r}")
    out = []
    for t in thresholds:
        binary = np.where(u8 > int(t * top), 255, 0).astype(np.uint8)
        out.append(_boxes_cv2(binary, multi_contour, cv2) if cv2 is not None
                   else _boxes_scipy(binary, multi_contour))
    return out


class BoxAccumulator:
    """Accumulates BoxAcc(t, delta) over images (MaxBoxAccV2, top-1 loc).

    Example:
        >>> acc = BoxAccumulator()
        >>> acc.add(cam, [(10, 12, 40, 50)], correct=True)   # per image
        >>> acc.result()["maxboxacc_v2"]                     # percent
    """

    def __init__(self, thresholds: np.ndarray | None = None,
                 iou_thresholds: Sequence[int] = IOU_THRESHOLDS, multi_contour: bool = True,
                 backend: str = "auto"):
        self.thresholds = cam_thresholds() if thresholds is None else np.asarray(thresholds)
        self.iou_thresholds = tuple(int(d) for d in iou_thresholds)
        self.multi_contour = multi_contour
        self.backend = backend
        self.hits = {d: np.zeros(len(self.thresholds), np.int64) for d in self.iou_thresholds}
        self.loc_hits = np.zeros(len(self.thresholds), np.int64)  # class right and IoU >= 50
        self.count = 0
        self.cls_correct = 0
        self.cls_count = 0

    def best_ious(self, cam: np.ndarray, gt_boxes: Sequence[Sequence[int]]) -> np.ndarray:
        """(T,) the best IoU of any candidate box with any ground-truth box, per
        threshold."""
        gt = np.asarray(gt_boxes, np.int64).reshape(-1, 4)
        if len(gt) == 0:
            raise ValueError("an image without ground-truth boxes cannot be scored")
        cand = boxes_from_cam(cam, self.thresholds, self.multi_contour, self.backend)
        return np.array([iou_matrix(c, gt).max() for c in cand])

    def add(self, cam: np.ndarray, gt_boxes: Sequence[Sequence[int]],
            correct: bool | None = None) -> np.ndarray:
        """Scores one image: ``cam`` (H, W) at the resolution of the boxes, ``gt_boxes``
        inclusive (x0, y0, x1, y1); ``correct``: whether the top-1 class was right
        (None: not counted for top-1 loc / cls). Returns its best IoU per threshold."""
        ious = self.best_ious(cam, gt_boxes)
        for d in self.iou_thresholds:
            self.hits[d] += ious >= d / 100
        if correct is not None:
            self.cls_count += 1
            self.cls_correct += bool(correct)
            if correct:
                self.loc_hits += ious >= 0.5
        self.count += 1
        return ious

    def box_acc(self, delta: int) -> np.ndarray:
        """(T,) BoxAcc(t, delta) in percent."""
        return 100.0 * self.hits[int(delta)] / max(1, self.count)

    def result(self, threshold: float | None = None) -> dict:
        """``maxboxacc_<d>`` (percent) and ``best_threshold_<d>`` per delta,
        ``maxboxacc_v2`` (their mean), ``top1_cls``, and -- at ``threshold`` (default
        the best threshold for IoU 50 on these images) -- ``top1_loc`` and
        ``gt_known_loc`` (box accuracy at IoU 50), with ``threshold`` itself."""
        if self.count == 0:
            raise ValueError("no images scored")
        res: dict = {"n": self.count}
        for d in self.iou_thresholds:
            acc = self.box_acc(d)
            i = int(np.argmax(acc))
            res[f"maxboxacc_{d}"] = float(acc[i])
            res[f"best_threshold_{d}"] = float(self.thresholds[i])
        res["maxboxacc_v2"] = float(np.mean([res[f"maxboxacc_{d}"]
                                             for d in self.iou_thresholds]))
        if threshold is None:
            best = self.hits[50] if 50 in self.hits else self.loc_hits
            threshold = float(self.thresholds[int(np.argmax(best))])
        i = int(np.argmin(np.abs(self.thresholds - threshold)))
        res["threshold"] = float(self.thresholds[i])
        if 50 in self.hits:
            res["gt_known_loc"] = float(self.box_acc(50)[i])
        if self.cls_count:
            res["top1_cls"] = 100.0 * self.cls_correct / self.cls_count
            res["top1_loc"] = 100.0 * float(self.loc_hits[i]) / self.cls_count
        return res


class MaskAccumulator:
    """Accumulates pixel scores against masks for PxAP (Choe et al.'s MaskEvaluator):
    histograms of the normalised CAM over object and background pixels."""

    def __init__(self, thresholds: np.ndarray | None = None):
        self.thresholds = cam_thresholds() if thresholds is None else np.asarray(thresholds)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.pos = np.zeros(len(self.edges) - 1)
        self.neg = np.zeros(len(self.edges) - 1)
        self.count = 0

    def add(self, cam: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None = None) -> None:
        """``cam`` (H, W), ``mask`` (H, W) bool object pixels, ``ignore`` (H, W) bool
        pixels left out."""
        cam = normalize_cam(cam)
        mask = np.asarray(mask, bool)
        if mask.shape != cam.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the CAM's {cam.shape}")
        keep = ~np.asarray(ignore, bool) if ignore is not None else np.ones_like(mask)
        self.pos += np.histogram(cam[mask & keep], bins=self.edges)[0]
        self.neg += np.histogram(cam[~mask & keep], bins=self.edges)[0]
        self.count += 1

    def result(self) -> dict:
        """``{"pxap": percent, "n": images}``; ValueError when no object pixel or no
        positive prediction was seen."""
        tp = self.pos[::-1].cumsum()
        fp = self.neg[::-1].cumsum()
        if self.pos.sum() <= 0:
            raise ValueError("PxAP: no object pixels in the masks")
        if ((tp + fp) <= 0).all():
            raise ValueError("PxAP: no positive prediction")
        nz = (tp + fp) != 0
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=nz)
        recall = tp / self.pos.sum()
        ap = (precision[1:] * np.diff(recall))[nz[1:]].sum()
        return {"pxap": 100.0 * float(ap), "n": self.count}
