"""CIFAR-10-C corruptions (tvcli.data.corruptions): determinism, range, shape,
severity ordering, and known-answer checks of the simple ones."""

from __future__ import annotations

import numpy as np
import pytest

from tvcli.data import corruptions as cc
from tvcli.data.corruptions import CORRUPTIONS, corrupt

# glass_blur (python pixel-swap loop, ~0.5 s per image) is exercised once, not per test.
FAST = [n for n in CORRUPTIONS if n != "glass_blur"]


def _images(n: int = 3) -> np.ndarray:
    """Synthetic 32x32 RGB uint8 images with edges, gradients and texture."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = []
    for i in range(n):
        base = np.stack([yy, xx, (yy + xx) / 2], -1) * (0.4 + 0.2 * i)
        base[8 + i:20 + i, 6:22] += 0.35  # a bright square: edges
        base += 0.1 * np.sin((3 + i) * np.pi * xx)[..., None] * np.cos(2 * np.pi * yy)[..., None]
        base += 0.02 * rng.standard_normal((32, 32, 3))  # fine texture
        out.append(np.uint8(np.clip(base, 0, 1) * 255))
    return np.stack(out)


def _fields(n: int = 8) -> np.ndarray:
    """Random smooth colour fields (Gaussian-filtered noise, std ~0.25): no periodic
    content, so pixelation and zoom do not alias into chance agreements."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    return np.stack([np.uint8(np.clip(0.5 + 0.25 * gaussian_filter(
        rng.standard_normal((32, 32, 3)), (1.5, 1.5, 0)) / 0.19, 0, 1) * 255)
        for _ in range(n)])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse)) if mse else np.inf


@pytest.fixture
def frost_dir(tmp_path, monkeypatch):
    """Synthetic frost textures (tvcli ships none) via $TVCLI_FROST_DIR."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(2):
        tex = np.uint8(rng.random((200, 240, 3)) * 255)
        Image.fromarray(tex).save(tmp_path / f"frost{i}.png")
    monkeypatch.setenv("TVCLI_FROST_DIR", str(tmp_path))
    monkeypatch.setattr(cc, "_FROST_CACHE", None)
    yield tmp_path
    cc._FROST_CACHE = None


def test_fifteen_types() -> None:
    assert len(CORRUPTIONS) == 15


@pytest.mark.parametrize("name", FAST)
def test_deterministic_shape_range_and_index_seeded(name: str, frost_dir) -> None:
    x = _images(2)
    for sev in (1, 5):
        a = corrupt(x[0], name, sev, index=3, seed=0)
        b = corrupt(x[0], name, sev, index=3, seed=0)
        assert a.shape == (32, 32, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)  # fixed seed -> identical output
    assert not np.array_equal(corrupt(x[0], name, 5), x[0])  # it does something
    if name not in ("contrast", "brightness", "defocus_blur", "zoom_blur", "pixelate",
                    "jpeg_compression"):  # random ones: the index and seed matter
        assert not np.array_equal(corrupt(x[0], name, 3, index=0),
                                  corrupt(x[0], name, 3, index=1))
        assert not np.array_equal(corrupt(x[0], name, 3, seed=0),
                                  corrupt(x[0], name, 3, seed=1))
    # float input in [0, 1] gives the same as uint8 input
    assert np.array_equal(corrupt(x[1] / 255.0, name, 2, 5), corrupt(x[1], name, 2, 5))


def test_glass_blur_once() -> None:
    x = _images(1)[0]
    a = corrupt(x, "glass_blur", 4, index=2)
    assert a.shape == x.shape and np.array_equal(a, corrupt(x, "glass_blur", 4, index=2))
    assert 10 < _psnr(a, x) < 40


# Severities that are not ordered by distortion in the published CIFAR constants:
# elastic_transform's affine part shrinks with severity (0.08 -> 0.03 of the size),
# glass_blur's blur grows while swaps repeat, frost 3 -> 4 keeps less of the texture
# weight change than the image weight (0.9/0.4 -> 0.85/0.4). Measured on CIFAR test
# images, mean PSNR vs clean: see docs/classification.md.
MONOTONE = [n for n in FAST if n not in ("elastic_transform", "frost")]


@pytest.mark.parametrize("name", MONOTONE)
def test_psnr_falls_with_severity(name: str) -> None:
    x = _fields(8)
    means = [np.mean([_psnr(corrupt(im, name, s, i), im) for i, im in enumerate(x)])
             for s in range(1, 6)]
    assert all(a > b for a, b in zip(means[:-1], means[1:], strict=True)), (name, means)


def test_known_answers() -> None:
    x = _images(1)[0]
    xf = x / 255.0
    # contrast: (x - per-channel mean) * c + mean, c = 0.4 at severity 3
    m = xf.mean(axis=(0, 1), keepdims=True)
    # stored as the published generator stores it: np.uint8 of 0-255 floats truncates
    want = np.uint8(np.clip((xf - m) * 0.4 + m, 0, 1) * 255)
    assert np.array_equal(corrupt(x, "contrast", 3), want)
    # brightness keeps hue/saturation: the channel ratios of a coloured pixel stay
    b = corrupt(x, "brightness", 2).astype(float)
    assert np.all(b.max(-1) >= x.max(-1) - 1)
    # gaussian noise: residual std ~ 0.08 at severity 3 (no clipping for mid-grey)
    grey = np.full((32, 32, 3), 128, np.uint8)
    r = corrupt(grey, "gaussian_noise", 3).astype(float) / 255 - 128 / 255
    assert abs(r.std() - 0.08) < 0.006
    # impulse noise: about 3 % of values become 0 or 255 at severity 3
    hit = corrupt(grey, "impulse_noise", 3)
    frac = np.mean((hit == 0) | (hit == 255))
    assert 0.02 < frac < 0.04


def test_motion_kernel() -> None:
    taps = cc.motion_blur_kernel(10, 2, 0.0)
    assert len(taps) == 21 and abs(sum(w for *_, w in taps) - 1) < 1e-12
    assert taps[0][:2] == (0, 0) and taps[3][:2] == (0, 3)  # along +x
    assert cc.motion_blur_kernel(10, 2, 90.0)[3][:2] == (3, 0)  # along +y


def test_plasma_fractal() -> None:
    rng = np.random.default_rng(0)
    p = cc.plasma_fractal(rng, 32, 3.0)
    assert p.shape == (32, 32) and p.min() == 0 and p.max() == 1
    assert np.array_equal(p, cc.plasma_fractal(np.random.default_rng(0), 32, 3.0))


def test_bad_arguments_and_missing_frost(monkeypatch) -> None:
    x = _images(1)[0]
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "rain", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "fog", 6)
    with pytest.raises(ValueError, match="RGB"):
        corrupt(x[..., 0], "fog", 1)
    monkeypatch.delenv("TVCLI_FROST_DIR", raising=False)
    monkeypatch.setattr(cc, "_FROST_CACHE", None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "imagecorruptions" else real(n, *a))
    with pytest.raises(cc.MissingTexture, match="imagecorruptions"):
        corrupt(x, "frost", 1)


# ---------------------------------------------------------------------------------
# Checks against the published CIFAR-10-C generator (hendrycks/robustness,
# ImageNet-C/create_c/make_cifar_c.py), read for its constants and semantics; see
# docs/classification.md "Checked against the published generator".


def test_motion_blur_and_snow_use_the_cifar_constants(monkeypatch) -> None:
    """(radius, sigma) of ImageMagick's motion blur per severity, CIFAR-10-C's."""
    seen: list[tuple[float, float]] = []
    real = cc.motion_blur_kernel

    def spy(radius, sigma, angle):
        seen.append((radius, sigma))
        return real(radius, sigma, angle)

    monkeypatch.setattr(cc, "motion_blur_kernel", spy)
    x = _images(1)[0]
    for sev in range(1, 6):
        corrupt(x, "motion_blur", sev)
    assert seen == [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]
    seen.clear()
    for sev in range(1, 6):
        corrupt(x, "snow", sev)
    assert seen == [(8, 3), (10, 4), (10, 4), (12, 6), (14, 12)]


def test_glass_shuffle_copies_like_the_published_generator() -> None:
    """Its "swap" of numpy views copies: with delta 1, each pixel takes the value of
    an original pixel at most one row up and one column left (none travels further),
    border rows/columns 0 and 1 stay, and values get duplicated."""
    img = np.arange(32 * 32, dtype=np.int64).reshape(32, 32, 1).repeat(3, axis=2)
    out = cc._glass_shuffle(img.copy(), 1, 1, np.random.default_rng(0))
    src = out[..., 0]
    rows, cols = np.divmod(src, 32)
    ii, jj = np.mgrid[0:32, 0:32]
    assert np.all((ii - rows >= 0) & (ii - rows <= 1) & (jj - cols >= 0) & (jj - cols <= 1))
    assert np.array_equal(out[:2], img[:2]) and np.array_equal(out[:, :2], img[:, :2])
    assert len(np.unique(src)) < 32 * 32 - 100  # copies, not a permutation
    assert np.array_equal(out[..., 0], out[..., 2])  # whole pixels move


class _MaxRng:
    """A stand-in generator whose uniform(lo, hi, size) is always hi."""

    def uniform(self, lo, hi, size):
        return np.full(size, float(hi))


def _plasma_reference(mapsize: int, decay: float) -> np.ndarray:
    """Diamond-square written point by point (float64), with the published
    amplitude rule: offset wibble * U(-wibble, wibble), here always wibble**2;
    wibble = 100 at the coarsest step, divided by ``decay`` after each step."""
    n = mapsize
    a = np.zeros((n, n))
    step, wib = n, 100.0
    while step >= 2:
        h = step // 2
        for i in range(h, n, step):
            for j in range(h, n, step):
                a[i, j] = (a[i - h, j - h] + a[i - h, (j + h) % n] + a[(i + h) % n, j - h]
                           + a[(i + h) % n, (j + h) % n]) / 4 + wib * wib
        new = {}
        for i in range(0, n, step):  # midpoints of horizontal edges
            for j in range(h, n, step):
                new[i, j] = (a[i, j - h] + a[i, (j + h) % n] + a[i - h, j]
                             + a[(i + h) % n, j]) / 4 + wib * wib
        for i in range(h, n, step):  # midpoints of vertical edges
            for j in range(0, n, step):
                new[i, j] = (a[i - h, j] + a[(i + h) % n, j] + a[i, j - h]
                             + a[i, (j + h) % n]) / 4 + wib * wib
        for k, v in new.items():
            a[k] = v
        step, wib = h, wib / decay
    a -= a.min()
    return a / a.max()


@pytest.mark.parametrize("decay", [3.0, 1.75])
def test_plasma_fractal_matches_the_published_amplitudes(decay: float) -> None:
    got = cc.plasma_fractal(_MaxRng(), 8, decay)
    np.testing.assert_allclose(got, _plasma_reference(8, decay), rtol=0, atol=1e-12)


def test_frost_uses_five_textures_subsampled_as_opencv(tmp_path, monkeypatch) -> None:
    """The published generator draws np.random.randint(5): the sixth texture is never
    used; it downsizes by 5 with OpenCV's bilinear resize (no anti-aliasing), which
    samples pixel 5 d + 2."""
    from PIL import Image

    for i in range(1, 6):
        Image.fromarray(np.zeros((200, 240, 3), np.uint8)).save(tmp_path / f"frost{i}.png")
    Image.fromarray(np.full((200, 240, 3), 255, np.uint8)).save(tmp_path / "frost6.png")
    monkeypatch.setenv("TVCLI_FROST_DIR", str(tmp_path))
    monkeypatch.setattr(cc, "_FROST_CACHE", None)
    grey = np.full((32, 32, 3), 100, np.uint8)
    for i in range(40):  # severity 1: 1 x image + 0.2 x texture; black textures only
        assert np.array_equal(corrupt(grey, "frost", 1, index=i), grey)
    cc._FROST_CACHE = None
    tex = np.random.default_rng(0).integers(0, 256, (203, 241, 3), dtype=np.uint8)
    small = cc._subsample_by_5(tex)
    assert small.shape == (41, 48, 3)  # round(203 / 5), round(241 / 5)
    assert np.array_equal(small[3, 4], tex[17, 22])
    cv2 = pytest.importorskip("cv2")
    assert np.array_equal(small, cv2.resize(tex, (0, 0), fx=0.2, fy=0.2))


class _Uniform:
    """A generator with only ``uniform``, seeded: lets a test replay its draws."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def uniform(self, lo, hi, size=None):
        return self.rng.uniform(lo, hi, size)


@pytest.mark.parametrize("seed", [0, 1])
def test_elastic_affine_part_matches_opencv(seed: int) -> None:
    """Severity 1 is the affine warp alone (alpha 0): the published generator's
    cv2.getAffineTransform of its (x, y) control points + warpAffine (REFLECT_101)."""
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(9).random((32, 32, 3)).astype(np.float32)
    ours = cc.elastic_transform(img.astype(np.float64), _Uniform(seed), 1)
    c, sq = np.float32([16, 16]), 10
    pts1 = np.float32([c + sq, [c[0] + sq, c[1] - sq], c - sq])
    pts2 = pts1 + np.random.default_rng(seed).uniform(-32 * 0.08, 32 * 0.08,
                                                      pts1.shape).astype(np.float32)
    ref = cv2.warpAffine(img, cv2.getAffineTransform(pts1, pts2), (32, 32),
                         borderMode=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(ours, np.clip(ref, 0, 1), atol=1e-5)


def test_defocus_matches_opencv_disk() -> None:
    """The published disk: cv2.GaussianBlur(ksize 3) of an aliased disk, then
    cv2.filter2D per channel (REFLECT_101)."""
    cv2 = pytest.importorskip("cv2")
    x = np.random.default_rng(4).random((32, 32, 3))
    for sev, (r, a) in enumerate(((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2),
                                  (1.5, 0.1)), 1):
        L = np.arange(-8, 9)
        xx, yy = np.meshgrid(L, L)
        disk = np.float32(xx ** 2 + yy ** 2 <= r ** 2)
        k = cv2.GaussianBlur(disk / disk.sum(), ksize=(3, 3), sigmaX=a)
        ref = np.stack([cv2.filter2D(x[..., ch], -1, k) for ch in range(3)], -1)
        np.testing.assert_allclose(cc.defocus_blur(x, None, sev), np.clip(ref, 0, 1),
                                   atol=1e-6)


def test_brightness_matches_scikit_image_hsv() -> None:
    """The published brightness: skimage rgb2hsv, V + c clipped, hsv2rgb."""
    color = pytest.importorskip("skimage.color")
    x = _images(2)[1] / 255.0
    x[0, :4] = 0.0  # black pixels (hue undefined) too
    for sev, c in enumerate((0.05, 0.1, 0.15, 0.2, 0.3), 1):
        hsv = color.rgb2hsv(x)
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        ref = np.clip(color.hsv2rgb(hsv), 0, 1)
        np.testing.assert_allclose(cc.brightness(x, None, sev), ref, atol=1e-9)
