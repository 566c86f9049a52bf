"""MaxBoxAccV2, PxAP, top-1 loc / cls (tvcli.metrics_wsol) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from tvcli.metrics_wsol import (
    BoxAccumulator,
    MaskAccumulator,
    boxes_from_cam,
    cam_thresholds,
    iou_matrix,
    normalize_cam,
)

try:
    import cv2  # noqa: F401

    HAVE_CV2 = True
except ImportError:
    HAVE_CV2 = False

BACKENDS = ["scipy"] + (["cv2"] if HAVE_CV2 else [])


def test_iou_inclusive_pixels() -> None:
    # 10x10 boxes overlapping in 5x5 pixels: 25 / (100 + 100 - 25)
    assert iou_matrix([[0, 0, 9, 9]], [[5, 5, 14, 14]])[0, 0] == pytest.approx(25 / 175)
    assert iou_matrix([[0, 0, 9, 9]], [[10, 10, 12, 12]])[0, 0] == 0.0
    assert iou_matrix([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 1.0  # one pixel
    m = iou_matrix([[0, 0, 9, 9], [0, 0, 4, 4]], [[0, 0, 9, 9], [0, 0, 4, 9], [20, 20, 21, 21]])
    assert m.shape == (2, 3) and m[1, 1] == pytest.approx(25 / 50)


def test_grid_and_normalisation() -> None:
    t = cam_thresholds()
    assert len(t) == 100 and t[0] == 0 and t[-1] == pytest.approx(0.99)
    assert normalize_cam(np.full((3, 3), 7.0)).max() == 0
    c = normalize_cam(np.array([[-1.0, 1.0], [0.0, 3.0]]))
    assert c.min() == 0 and c.max() == 1 and c[0, 1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="NaN"):
        normalize_cam(np.array([[np.nan, 1.0]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_boxes_two_blobs_and_holes(backend: str) -> None:
    cam = np.zeros((20, 30))
    cam[2:6, 3:9] = 1.0  # rows 2-5, cols 3-8
    cam[10:18, 15:25] = 0.6  # rows 10-17, cols 15-24
    # at t = 0.5 both blobs survive; boxes as the reference code: (x, y, x + w, y + h)
    (boxes,) = boxes_from_cam(cam, [0.5], backend=backend)
    assert sorted(map(tuple, boxes)) == [(3, 2, 9, 6), (15, 10, 25, 18)]
    (boxes,) = boxes_from_cam(cam, [0.7], backend=backend)  # the weaker blob is gone
    assert list(map(tuple, boxes)) == [(3, 2, 9, 6)]
    (largest,) = boxes_from_cam(cam, [0.5], multi_contour=False, backend=backend)
    assert list(map(tuple, largest)) == [(15, 10, 25, 18)]
    (nothing,) = boxes_from_cam(np.zeros((8, 8)), [0.5], backend=backend)
    assert list(map(tuple, nothing)) == [(0, 0, 0, 0)]
    ring = np.zeros((12, 12))
    ring[2:10, 2:10] = 1.0
    ring[4:7, 5:8] = 0.0  # a hole: rows 4-6, cols 5-7; its contour rows 3-7, cols 4-8
    (boxes,) = boxes_from_cam(ring, [0.5], backend=backend)
    assert sorted(map(tuple, boxes)) == [(2, 2, 10, 10), (4, 3, 9, 8)]


@pytest.mark.skipif(not HAVE_CV2, reason="OpenCV (the reference contours) not installed")
def test_scipy_boxes_match_opencv_on_random_maps() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    grid = np.linspace(0, 0.95, 20)
    for _ in range(30):
        cam = ndimage.gaussian_filter(rng.random((40, 56)), 2.0)
        a = boxes_from_cam(cam, grid, backend="cv2")
        b = boxes_from_cam(cam, grid, backend="scipy")
        for x, y in zip(a, b, strict=True):
            assert sorted(map(tuple, x)) == sorted(map(tuple, y))


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxboxacc_hand_computed(backend: str) -> None:
    """Image 1: the map is 1 exactly on its 4x4 ground-truth box (2,2)-(5,5); the box
    at every threshold is (2,2)-(6,6) (the reference's x + w), 25 pixels, IoU 16/25 =
    0.64: localised at IoU 30 and 50, not 70. Image 2: its map lies far from its box:
    IoU 0. MaxBoxAcc = 50, 50, 0; MaxBoxAccV2 = 100/3."""
    acc = BoxAccumulator(backend=backend)
    cam1 = np.zeros((10, 10))
    cam1[2:6, 2:6] = 1.0
    ious = acc.add(cam1, [(2, 2, 5, 5)], correct=True)
    assert ious == pytest.approx(np.full(100, 0.64))
    cam2 = np.zeros((10, 10))
    cam2[0:2, 0:2] = 1.0
    acc.add(cam2, [(6, 6, 9, 9)], correct=True)
    r = acc.result()
    assert (r["maxboxacc_30"], r["maxboxacc_50"], r["maxboxacc_70"]) == (50.0, 50.0, 0.0)
    assert r["maxboxacc_v2"] == pytest.approx(100 / 3)
    assert r["top1_cls"] == 100.0 and r["top1_loc"] == 50.0 and r["gt_known_loc"] == 50.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_contour_matters_and_the_check_can_fail(backend: str) -> None:
    """The object is the small blob; a bigger distractor blob is brighter than nothing
    but also present. With every contour a candidate (MaxBoxAccV2) the image is
    localised; with the largest contour only (the check a wrong implementation would
    make) it is not -- this test tells the two apart."""
    cam = np.zeros((40, 40))
    cam[2:8, 2:8] = 1.0  # the object (6x6)
    cam[15:38, 15:38] = 0.9  # a larger distractor
    gt = [(2, 2, 7, 7)]
    multi = BoxAccumulator(backend=backend)
    multi.add(cam, gt)
    single = BoxAccumulator(multi_contour=False, backend=backend)
    single.add(cam, gt)
    assert multi.result()["maxboxacc_50"] == 100.0
    assert single.result()["maxboxacc_50"] == 100.0  # t >= 0.9 leaves the object alone
    cam[15:38, 15:38] = 1.0  # now no threshold separates them
    multi, single = BoxAccumulator(backend=backend), BoxAccumulator(multi_contour=False,
                                                                    backend=backend)
    multi.add(cam, gt)
    single.add(cam, gt)
    assert multi.result()["maxboxacc_50"] == 100.0
    assert single.result()["maxboxacc_50"] == 0.0


def test_threshold_choice_and_top1_loc() -> None:
    """The map has a core (1.0) on the object and a halo (0.4) around it; at t < 0.4
    the halo makes the box too big. The best threshold for IoU 50 is the first grid
    value >= 0.4; at a threshold chosen elsewhere (0.1) the box fails. A wrong class
    never counts for top-1 loc."""
    cam = np.zeros((40, 40))
    cam[5:35, 5:35] = 0.4
    cam[15:25, 15:25] = 1.0
    gt = [(15, 15, 24, 24)]
    acc = BoxAccumulator()
    acc.add(cam, gt, correct=True)
    acc.add(cam, gt, correct=False)
    r = acc.result()
    assert r["threshold"] == pytest.approx(0.40)
    assert r["gt_known_loc"] == 100.0 and r["top1_loc"] == 50.0 and r["top1_cls"] == 50.0
    r = acc.result(threshold=0.1)
    assert r["threshold"] == pytest.approx(0.1)
    assert r["gt_known_loc"] == 0.0 and r["top1_loc"] == 0.0
    assert r["maxboxacc_50"] == 100.0  # the max over thresholds does not depend on it
    with pytest.raises(ValueError, match="no images"):
        BoxAccumulator().result()
    with pytest.raises(ValueError, match="ground-truth"):
        BoxAccumulator().add(cam, [])


def test_pxap_hand_computed() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # 4 of 16 pixels are object
    perfect = MaskAccumulator()
    perfect.add(mask.astype(float), mask)
    assert perfect.result()["pxap"] == pytest.approx(100.0)
    flat = MaskAccumulator()  # a constant map: precision = 4/16 at recall 1
    flat.add(np.ones((4, 4)), mask)
    assert flat.result()["pxap"] == pytest.approx(25.0)
    # object pixels 0.9, 0.9, 0.5, 0.5; background 0.7 (12 px): the curve has points
    # (recall .5, precision 1) and (1, 4/16) at t = .5 -> (.5)(1) + (.5)(4/16) = .625
    cam = np.full((4, 4), 0.7)
    cam[0, :2] = 0.9
    cam[1, :2] = 0.5
    cam[3, 3] = 0.0  # background minimum: normalisation maps .9 -> 1, .5 -> 5/9, .7 -> 7/9
    mid = MaskAccumulator()
    mid.add(cam, mask)
    # thresholds: at 1.0 recall .5 precision 1; at 7/9 adds 11 background; at 5/9 the
    # rest of the object: recall 1 precision 4/15; AP = .5 * 1 + 0 + .5 * 4/15
    assert mid.result()["pxap"] == pytest.approx(100 * (0.5 + 0.5 * 4 / 15))
    ign = MaskAccumulator()  # ignored pixels are not scored: the distractor is ignored
    ign.add(cam, mask, ignore=~mask & (cam > 0.6))
    assert ign.result()["pxap"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="shape"):
        MaskAccumulator().add(np.ones((3, 3)), mask)
    with pytest.raises(ValueError, match="no object pixels"):
        empty = MaskAccumulator()
        empty.add(cam, np.zeros((4, 4), bool))
        empty.result()
