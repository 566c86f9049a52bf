"""Recreates examples/images/ from the photographs scikit-image ships.

Run once by hand (needs scikit-image); the results are committed. Each photo is
downscaled 2x by averaging 2x2 blocks (so the files stay small) and stored as
8-bit PNG; ``astronaut_noisy.png`` adds Gaussian noise (sigma 0.08, seed 0) so
that the smoothing demo has noise to remove. Sources and licences: LICENSE.md.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage import data

HERE = Path(__file__).parent / "images"


def halve(img: np.ndarray) -> np.ndarray:
    """2x2 block average, rounded back to uint8."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    img = img[:h, :w].astype(np.float64)
    small = img.reshape(h // 2, 2, w // 2, 2, *img.shape[2:]).mean(axis=(1, 3))
    return np.rint(small).astype(np.uint8)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    astronaut = halve(data.astronaut())
    iio.imwrite(HERE / "astronaut.png", astronaut)
    iio.imwrite(HERE / "camera.png", halve(data.camera()))
    iio.imwrite(HERE / "coffee.png", halve(data.coffee()))
    rng = np.random.default_rng(0)
    noisy = astronaut / 255.0 + rng.normal(0.0, 0.08, astronaut.shape)
    iio.imwrite(HERE / "astronaut_noisy.png", np.rint(np.clip(noisy, 0, 1) * 255).astype(np.uint8))


if __name__ == "__main__":
    main()
