"""tvcli: fast, exact, differentiable total-variation operators for PyTorch.

Functional API: :func:`prox_tv1d`, :func:`prox_tv2d`, :func:`sharpen_tv1d`,
:func:`sharpen_tv2d`; modules in :mod:`tvcli.nn`. See README.md for the command line.
"""

from tvcli._extension import HAS_EXT, built_backends
from tvcli.prox import SOLVERS, prox_tv1d
from tvcli.prox2d import Tv2dInfo, prox_tv2d, sharpen_tv1d, sharpen_tv2d

__version__ = "0.1.0"

__all__ = [
    "HAS_EXT",
    "SOLVERS",
    "Tv2dInfo",
    "built_backends",
    "prox_tv1d",
    "prox_tv2d",
    "sharpen_tv1d",
    "sharpen_tv2d",
    "__version__",
]
