"""tvcli: fast, exact, differentiable total-variation operators for PyTorch.

Functional API: :func:`prox_tv` (n-D, isotropic / colour / anisotropic, weight
maps), :func:`prox_tv1d`, :func:`prox_tv2d`, :func:`sharpen_tv1d`,
:func:`sharpen_tv2d`; modules in :mod:`tvcli.nn`. See README.md for the command line.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> defining module, imported on first attribute access (PEP 562):
# `tvcli --help` must not pay torch's ~1.5 s import, which `import tvcli.cli`
# would otherwise trigger through this package's __init__.
_LAZY = {
    "HAS_EXT": "tvcli._extension",
    "built_backends": "tvcli._extension",
    "SOLVERS": "tvcli.prox",
    "prox_tv1d": "tvcli.prox",
    "prox_tv": "tvcli.prox_nd",
    "TvInfo": "tvcli.prox_nd",
    "Tv2dInfo": "tvcli.prox2d",
    "prox_tv2d": "tvcli.prox2d",
    "sharpen_tv1d": "tvcli.prox2d",
    "sharpen_tv2d": "tvcli.prox2d",
    "set_num_threads": "tvcli.threads",
}

__all__ = [
    "HAS_EXT",
    "SOLVERS",
    "Tv2dInfo",
    "TvInfo",
    "built_backends",
    "prox_tv",
    "prox_tv1d",
    "prox_tv2d",
    "set_num_threads",
    "sharpen_tv1d",
    "sharpen_tv2d",
    "__version__",
]


# Subpackages reachable as attributes (`tvcli.nn.TVLayer`) without an explicit import.
_SUBMODULES = ("nn", "metrics", "models", "io", "data")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"tvcli.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tvcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
