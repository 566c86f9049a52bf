"""tvcli: fast, exact, differentiable total-variation operators for PyTorch.

Functional API: :func:`prox_tv1d`. See README.md for the command line.
"""

from tvcli._extension import HAS_EXT, built_backends
from tvcli.prox import SOLVERS, prox_tv1d

__version__ = "0.1.0"

__all__ = ["HAS_EXT", "SOLVERS", "built_backends", "prox_tv1d", "__version__"]
