"""Does the maintained ``imagecorruptions`` package run on 32x32 images with today's
numpy / SciPy / scikit-image / OpenCV? Tries all 15 types at 5 severities and prints
ok or the error per type (its constants are ImageNet-C's in any case).

Run: PYTHONPATH=<folder with imagecorruptions installed> python benchmarks/imagecorruptions_probe.py
"""

import warnings

import cv2
import numpy as np
import scipy
import skimage
from imagecorruptions import corrupt, get_corruption_names

print("numpy", np.__version__, "scipy", scipy.__version__, "skimage", skimage.__version__,
      "cv2", cv2.__version__)
x = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
for name in get_corruption_names():
    res = []
    for s in range(1, 6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y = corrupt(x, corruption_name=name, severity=s)
            res.append(f"ok{np.asarray(y).shape}")
        except Exception as e:  # noqa: BLE001 -- report every failure
            res.append(f"FAIL {type(e).__name__}: {str(e)[:60]}")
    print(name, res[0] if len(set(res)) == 1 else res)
