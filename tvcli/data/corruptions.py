"""CIFAR-10-C: the 15 corruptions of Hendrycks & Dietterich (ICLR 2019) for 32x32 images.

Written for tvcli from the paper's definitions and the severity constants its
authors published for CIFAR-10-C (which differ from the ImageNet-C ones: e.g.
Gaussian noise sigma 0.04-0.10 here, 0.08-0.38 for ImageNet). Types and order as
in the paper's Table 2 / Yeh et al. Table 2:

noise: gaussian_noise, shot_noise, impulse_noise; blur: defocus_blur, glass_blur,
motion_blur, zoom_blur; weather: snow, frost, fog; digital: brightness, contrast,
elastic_transform, pixelate, jpeg_compression.

Every function maps one image ``x`` -- float64 array (32, 32, 3) RGB in [0, 1] --
and a ``numpy.random.Generator`` to a corrupted float64 array of the same shape in
[0, 1]. :func:`corrupt` draws that generator from ``(seed, type, severity, index)``
so a given image always gets the same corruption, independent of batch order.

Where the published generator used a library we do not depend on, the operation is
re-implemented from its definition: ImageMagick's motion blur (a one-sided
Gaussian-weighted line kernel at a random angle; used by motion_blur and snow),
scikit-image's salt-and-pepper noise and HSV brightness, OpenCV's affine warp and
filters (SciPy's ``mirror`` boundary = OpenCV's REFLECT_101). Results are therefore
*statistically* like CIFAR-10-C, not bit-identical to the published .npy files
(the random draws differ anyway: one numpy Generator per image here).

Constants and semantics were checked line by line against the published CIFAR-10-C
generator (``make_cifar_c.py`` of hendrycks/robustness), including its quirks that
shape the data: glass blur's "swap" copies, the fractal's squared amplitudes, frost
using 5 of its 6 textures, outputs truncated to 8 bits. docs/classification.md lists
what was checked and what still differs, per type.

Frost needs photographs of frost; tvcli ships none. :func:`frost_textures` takes
them from the ``imagecorruptions`` package (Apache-2.0; its six frost images come
from the original ImageNet-C release) when it is installed, or from a folder given
by ``$TVCLI_FROST_DIR``; without either, ``frost`` raises :class:`MissingTexture`.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["CORRUPTIONS", "SEVERITIES", "MissingTexture", "corrupt", "corrupt_batch",
           "frost_textures", "plasma_fractal", "motion_blur_kernel"]

SEVERITIES = (1, 2, 3, 4, 5)
_SIZE = 32


class MissingTexture(RuntimeError):
    """The frost corruption needs texture images that are not installed."""


# ------------------------------------------------------------------ helpers


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest") -> np.ndarray:
    """Gaussian filter over the two spatial axes of (H, W[, C]) (truncate 4 sigma)."""
    from scipy.ndimage import gaussian_filter

    s = (sigma, sigma) + (0,) * (x.ndim - 2)
    return gaussian_filter(x, s, mode=mode, truncate=4.0)


def _clipped_zoom(x: np.ndarray, zoom: float) -> np.ndarray:
    """Zooms the centre of (H, W[, C]) by ``zoom`` >= 1 (bilinear) back to (H, W)."""
    from scipy.ndimage import zoom as nd_zoom

    h = x.shape[0]
    ch = int(math.ceil(h / zoom))
    top = (h - ch) // 2
    crop = x[top:top + ch, top:top + ch]
    factors = (zoom, zoom) + (1,) * (x.ndim - 2)
    out = nd_zoom(crop, factors, order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim:trim + h, trim:trim + h]


def motion_blur_kernel(radius: float, sigma: float,
                       angle_deg: float) -> list[tuple[int, int, float]]:
    """Taps of a one-sided motion-blur line (ImageMagick's definition).

    ``2 ceil(radius) + 1`` taps at distance i = 0, 1, ... along the direction
    ``angle_deg`` (0 = +x, counter-clockwise in image coordinates with y down),
    weight ``exp(-i^2 / (2 sigma^2))``, normalised to sum 1. Returns
    ``[(dy, dx, weight), ...]`` with integer offsets (rounded).
    """
    width = 2 * int(math.ceil(radius)) + 1
    w = np.exp(-np.arange(width) ** 2 / (2.0 * sigma ** 2))
    w /= w.sum()
    a = math.radians(angle_deg)
    # ImageMagick rounds an offset v as ceil(v - 0.5) (halves go down)
    return [(math.ceil(i * math.sin(a) - 0.5), math.ceil(i * math.cos(a) - 0.5), float(w[i]))
            for i in range(width)]


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """Applies :func:`motion_blur_kernel` to (H, W[, C]); edge pixels are repeated."""
    h, w = x.shape[:2]
    out = np.zeros_like(x, dtype=np.float64)
    ys, xs = np.arange(h), np.arange(w)
    for dy, dx, wt in motion_blur_kernel(radius, sigma, angle_deg):
        yy = np.clip(ys + dy, 0, h - 1)
        xx = np.clip(xs + dx, 0, w - 1)
        out += wt * x[yy][:, xx]
    return out


def plasma_fractal(rng: np.random.Generator, mapsize: int = _SIZE,
                   wibbledecay: float = 3.0) -> np.ndarray:
    """(mapsize, mapsize) diamond-square fractal noise in [0, 1] (``mapsize`` a power of
    two), periodic.

    As in the published CIFAR-10-C generator: the random offset added to a new point
    is ``wibble * U(-wibble, wibble)`` (amplitude wibble squared), with wibble = 100 at
    the coarsest step and divided by ``wibbledecay`` after each step -- so the offsets
    shrink by wibbledecay**2 per octave, a smoother field than a plain 1/wibbledecay.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    a = np.zeros((mapsize, mapsize))
    step = mapsize
    wibble = 100.0
    while step >= 2:
        half = step // 2
        # square step: centre of each square = mean of its 4 corners + noise
        corners = a[0::step, 0::step]
        mean4 = (corners + np.roll(corners, -1, 0) + np.roll(corners, -1, 1)
                 + np.roll(np.roll(corners, -1, 0), -1, 1)) / 4
        a[half::step, half::step] = mean4 + wibble * rng.uniform(-wibble, wibble,
                                                                 mean4.shape)
        # diamond step: the edge midpoints = mean of their 4 neighbours + noise
        c = a[0::step, 0::step]
        m = a[half::step, half::step]
        # midpoints on horizontal edges (rows 0::step, cols half::step)
        top = (c + np.roll(c, -1, 1) + m + np.roll(m, 1, 0)) / 4
        a[0::step, half::step] = top + wibble * rng.uniform(-wibble, wibble, top.shape)
        # midpoints on vertical edges (rows half::step, cols 0::step)
        left = (c + np.roll(c, -1, 0) + m + np.roll(m, 1, 1)) / 4
        a[half::step, 0::step] = left + wibble * rng.uniform(-wibble, wibble, left.shape)
        step = half
        wibble /= wibbledecay
    a -= a.min()
    return a / a.max() if a.max() > 0 else a


# ------------------------------------------------------------------ the 15 types


def gaussian_noise(x, rng, severity):
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return np.clip(x + rng.normal(0.0, c, x.shape), 0, 1)


def shot_noise(x, rng, severity):
    c = (500, 250, 100, 75, 50)[severity - 1]
    return np.clip(rng.poisson(x * c) / c, 0, 1)


def impulse_noise(x, rng, severity):
    """Salt and pepper: each value (pixel and channel) becomes 0 or 1 with
    probability ``amount``, salt and pepper equally likely."""
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    out = x.copy()
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


def defocus_blur(x, rng, severity):
    """Convolution with an (anti-aliased) disk of the given radius."""
    from scipy.ndimage import convolve

    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    r = np.arange(-8, 9)
    yy, xx = np.meshgrid(r, r, indexing="ij")
    disk = (yy ** 2 + xx ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    # anti-aliasing: a 3x3 Gaussian of sigma ``alias`` over the disk (as OpenCV's
    # GaussianBlur with ksize 3, border REFLECT_101 = scipy "mirror")
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias ** 2))
    g /= g.sum()
    disk = convolve(disk, np.outer(g, g), mode="mirror")
    out = np.stack([convolve(x[..., ch], disk, mode="mirror") for ch in range(3)], -1)
    return np.clip(out, 0, 1)


def _glass_shuffle(img: np.ndarray, delta: int, iterations: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The pixel "swaps" of glass blur on (H, W, C), in place, as the published
    generator really does them.

    Its line ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]`` on a numpy array assigns
    views: pixel (h, w) receives (h2, w2)'s value and (h2, w2) keeps its own -- a
    copy, not a swap. Pixels are visited from the bottom-right corner to (delta + 1,
    delta + 1), offsets drawn uniformly from [-delta, delta) (so up / left only when
    delta = 1). Returns ``img``.
    """
    h, w = img.shape[:2]
    rows = range(h - delta, delta, -1)
    cols = range(w - delta, delta, -1)
    for _ in range(iterations):
        offsets = rng.integers(-delta, delta, size=(len(rows), len(cols), 2))
        for a, i in enumerate(rows):
            for b, j in enumerate(cols):
                dy, dx = offsets[a, b]
                img[i, j] = img[i + dy, j + dx]
    return img


def glass_blur(x, rng, severity):
    """Gaussian blur, local random pixel moves (:func:`_glass_shuffle`; max distance
    ``delta``, ``iterations`` passes over the image), Gaussian blur again."""
    sigma, delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2),
                                (0.4, 1, 2))[severity - 1]
    # the published generator quantises to 8 bits (truncating) after the first blur
    out = np.uint8(_gaussian(x, sigma) * 255)
    _glass_shuffle(out, delta, iterations, rng)
    return np.clip(_gaussian(out / 255.0, sigma), 0, 1)


def motion_blur(x, rng, severity):
    # CIFAR-10-C's (radius, sigma); (10, 1) ... (12, 3) are Tiny-ImageNet-C's
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    # the published generator goes through an 8-bit image around the blur
    x8 = np.round(x * 255) / 255
    return np.clip(_motion_blur(x8, radius, sigma, rng.uniform(-45, 45)), 0, 1)


def zoom_blur(x, rng, severity):
    top = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    zooms = np.arange(1, top, 0.01)
    out = x.copy()
    for z in zooms:
        out += _clipped_zoom(x, float(z))
    return np.clip(out / (len(zooms) + 1), 0, 1)


def snow(x, rng, severity):
    loc, scale, zoom, thr, radius, sigma, blend = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))[severity - 1]
    flakes = rng.normal(loc, scale, x.shape[:2])
    flakes = _clipped_zoom(flakes, zoom)
    flakes[flakes < thr] = 0
    # an 8-bit layer (truncated) goes into ImageMagick and an 8-bit one comes out
    flakes = np.floor(np.clip(flakes, 0, 1) * 255) / 255
    flakes = _motion_blur(flakes, radius, sigma, rng.uniform(-135, -45))
    flakes = (np.round(flakes * 255) / 255)[..., None]
    gray = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
    out = blend * x + (1 - blend) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(out + flakes + np.rot90(flakes, k=2), 0, 1)


_FROST_CACHE: list[np.ndarray] | None = None


def _subsample_by_5(img: np.ndarray) -> np.ndarray:
    """OpenCV's ``resize(img, fx=0.2, fy=0.2)`` (bilinear, no anti-aliasing): output
    pixel d samples input 5 d + 2 exactly (the centre of its 5x5 cell), output size
    round(0.2 x size). (H, W, C) -> (round(H / 5), round(W / 5), C)."""
    h, w = img.shape[:2]
    rows = np.minimum(5 * np.arange(max(1, round(h * 0.2))) + 2, h - 1)
    cols = np.minimum(5 * np.arange(max(1, round(w * 0.2))) + 2, w - 1)
    return img[rows][:, cols]


def frost_textures() -> list[np.ndarray]:
    """The frost photographs as float64 (H, W, 3) RGB in [0, 1], downscaled by 5 for
    32x32 images as the CIFAR-10-C generator does (:func:`_subsample_by_5`). From
    ``$TVCLI_FROST_DIR`` (any *.png/*.jpg, sorted by name) or the installed
    ``imagecorruptions`` package; raises :class:`MissingTexture`."""
    global _FROST_CACHE
    if _FROST_CACHE is not None:
        return _FROST_CACHE
    from PIL import Image

    folder = os.environ.get("TVCLI_FROST_DIR")
    if folder:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in
                       (".png", ".jpg", ".jpeg"))
    else:
        try:
            import importlib.util

            spec = importlib.util.find_spec("imagecorruptions")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise MissingTexture("frost needs texture photos: install the imagecorruptions "
                                 "package (Apache-2.0, ships them) or set $TVCLI_FROST_DIR")
        base = Path(next(iter(spec.submodule_search_locations))) / "frost"
        files = sorted(base.glob("frost*"))
    if not files:
        raise MissingTexture(f"no frost images found in {folder or 'imagecorruptions/frost'}")
    out = []
    for f in files:
        small = _subsample_by_5(np.asarray(Image.open(f).convert("RGB")))
        if min(small.shape[:2]) <= _SIZE:
            raise MissingTexture(f"{f}: frost texture too small ({small.shape[1]}x"
                                 f"{small.shape[0]} after downscaling by 5)")
        out.append(small.astype(np.float64) / 255.0)
    _FROST_CACHE = out
    return out


def frost(x, rng, severity):
    a, b = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    textures = frost_textures()
    # the published generator draws randint(5): frost6 (the sixth file) is never used
    tex = textures[int(rng.integers(min(5, len(textures))))]
    # randint(0, size - 32): the last possible offset is never drawn, as published
    y0 = int(rng.integers(0, tex.shape[0] - _SIZE))
    x0 = int(rng.integers(0, tex.shape[1] - _SIZE))
    h, w = x.shape[:2]
    return np.clip(a * x + b * tex[y0:y0 + h, x0:x0 + w], 0, 1)


def fog(x, rng, severity):
    amount, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    h, w = x.shape[:2]
    size = 1 << max(h, w, 2).bit_length() - 1
    size = size if size >= max(h, w) else size * 2
    top = x.max()
    out = x + amount * plasma_fractal(rng, size, decay)[:h, :w, None]
    return np.clip(out * top / (top + amount), 0, 1)


def brightness(x, rng, severity):
    """Raises V of HSV by c (clipped to 1), keeping hue and saturation: RGB scales by
    V_new / V (a black pixel becomes grey V_new)."""
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    v = x.max(axis=-1, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    scale = np.divide(v_new, v, out=np.zeros_like(v), where=v > 0)
    return np.clip(np.where(v > 0, x * scale, v_new), 0, 1)


def contrast(x, rng, severity):
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def elastic_transform(x, rng, severity):
    """A random affine warp of three control points, then a smooth random
    displacement field (alpha * Gaussian(sigma) of uniform noise)."""
    from scipy.ndimage import affine_transform, gaussian_filter, map_coordinates

    s = float(_SIZE)
    alpha, sigma, aff = ((s * 0, s * 0, s * 0.08), (s * 0.05, s * 0.2, s * 0.07),
                         (s * 0.08, s * 0.06, s * 0.06), (s * 0.1, s * 0.04, s * 0.05),
                         (s * 0.1, s * 0.03, s * 0.03))[severity - 1]
    h, w = x.shape[:2]
    centre = np.array([h, w], dtype=np.float64) // 2
    sq = min(h, w) // 3
    # the published generator's control points and offsets are OpenCV (x, y) pairs;
    # drawn in that order, then turned into (y, x)
    src_xy = np.array([centre + sq, centre + [sq, -sq], centre - sq])
    dst_xy = src_xy + rng.uniform(-aff, aff, size=src_xy.shape)
    src, dst = src_xy[:, ::-1], dst_xy[:, ::-1]
    # forward map src -> dst; affine_transform needs the inverse (output -> input)
    a_fwd = np.linalg.solve(np.c_[src, np.ones(3)], dst).T  # (2, 3): [A | t]
    a_inv = np.linalg.inv(a_fwd[:, :2])
    t_inv = -a_inv @ a_fwd[:, 2]
    warped = np.stack([affine_transform(x[..., ch], a_inv, t_inv, order=1, mode="mirror")
                       for ch in range(x.shape[2])], -1)
    dx = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [yy + dy, xx + dx]
    out = np.stack([map_coordinates(warped[..., ch], coords, order=1, mode="reflect")
                    for ch in range(x.shape[2])], -1)
    return np.clip(out, 0, 1)


def pixelate(x, rng, severity):
    from PIL import Image

    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = x.shape[:2]
    img = Image.fromarray(np.uint8(np.round(x * 255)))
    small = img.resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX), dtype=np.float64) / 255.0


def jpeg_compression(x, rng, severity):
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[severity - 1]
    buf = io.BytesIO()
    Image.fromarray(np.uint8(np.round(x * 255))).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64) / 255.0


Corruption = Callable[[np.ndarray, np.random.Generator, int], np.ndarray]

CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise,
    "impulse_noise": impulse_noise, "defocus_blur": defocus_blur,
    "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness,
    "contrast": contrast, "elastic_transform": elastic_transform, "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}


# Types whose published output comes out of ImageMagick or PIL as 8-bit (rounded).
_ALREADY_8BIT = frozenset({"motion_blur", "pixelate", "jpeg_compression"})


def _rng(seed: int, name: str, severity: int, index: int) -> np.random.Generator:
    # crc32 of the name: a stable id (Python's hash() of a str changes per process)
    return np.random.default_rng([seed, zlib.crc32(name.encode()), severity, index])


def corrupt(x: np.ndarray, name: str, severity: int, index: int = 0,
            seed: int = 0) -> np.ndarray:
    """Corrupts one image.

    Args:
        x: (32, 32, 3) RGB, uint8 (0-255) or float in [0, 1].
        name: one of :data:`CORRUPTIONS`.
        severity: 1-5.
        index: the image's index in its data set (part of the random seed).
        seed: the suite's seed.

    Returns:
        (32, 32, 3) uint8: corrupted images are stored as 8-bit, as CIFAR-10-C is:
        truncated (``np.uint8`` of 0-255 floats, as the published generator
        stores them), except the types whose published output is already 8-bit
        (rounded by their library: ImageMagick, PIL), which are rounded here.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1-5, got {severity!r}")
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {x.shape}")
    xf = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    out = np.clip(CORRUPTIONS[name](xf, _rng(seed, name, severity, index), severity), 0, 1)
    if name in _ALREADY_8BIT:
        return np.uint8(np.round(out * 255))
    return np.uint8(out * 255)


def corrupt_batch(images: np.ndarray, name: str, severity: int, seed: int = 0,
                  start: int = 0) -> np.ndarray:
    """(N, 32, 32, 3) uint8 -> (N, 32, 32, 3) uint8; image i uses index ``start + i``."""
    return np.stack([corrupt(img, name, severity, start + i, seed)
                     for i, img in enumerate(images)])
