"""Mean PSNR (dB) of each CIFAR-10-C corruption vs the clean image, per severity, and
the time per image: a sanity table for tvcli.data.corruptions (docs/classification.md).

Run: OMP_NUM_THREADS=1 python benchmarks/cifar10c_psnr.py \\
         ../shared/data/cifar10/cifar10-jpeg.tar.gz [PER_CLASS=1]
(frost needs the imagecorruptions package's textures or $TVCLI_FROST_DIR.)
"""

import sys
import time

import numpy as np

from tvcli.data.cifar import load_cifar10
from tvcli.data.corruptions import CORRUPTIONS, corrupt


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    m = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float(10 * np.log10(255 ** 2 / m)) if m else float("inf")


def main() -> None:
    per_class = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    imgs, _ = load_cifar10(sys.argv[1], "test", per_class=per_class)
    x = imgs.permute(0, 2, 3, 1).numpy()
    print("| corruption | s1 | s2 | s3 | s4 | s5 | ms/image |\n|---|---|---|---|---|---|---|")
    for name in CORRUPTIONS:
        t = time.perf_counter()
        row = [np.mean([psnr(corrupt(im, name, s, i), im) for i, im in enumerate(x)])
               for s in range(1, 6)]
        ms = (time.perf_counter() - t) / (5 * len(x)) * 1e3
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + f" | {ms:.0f} |")


if __name__ == "__main__":
    main()
