"""Build script for tvcli's compiled engine (tvcli._C).

Build against the installed torch, without build isolation:

    pip install --no-build-isolation -e .

CPU-only by default. The CUDA engine is built when FORCE_CUDA=1, or when the
installed torch has CUDA and nvcc is found (docs/building.md).
Set TVCLI_NO_EXT=1 to skip the compiled engine entirely (pure-PyTorch fallback).
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    """FORCE_CUDA=1, or a CUDA build of torch and an nvcc under CUDA_HOME."""
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    if torch.version.cuda is None or CUDA_HOME is None:
        return False
    return os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))


# Architectures built when TORCH_CUDA_ARCH_LIST is unset and no GPU is visible
# (torch would otherwise try to read the visible GPUs' and fail). Turing to Hopper
# as machine code, plus Hopper's PTX, which newer GPUs (Blackwell, sm_100/sm_120)
# compile at load time, so that they still get a kernel.
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


def _cuda_arch_list() -> str | None:
    """The TORCH_CUDA_ARCH_LIST to set for a CUDA build, or None to keep torch's.

    An explicit TORCH_CUDA_ARCH_LIST is kept; torch's own default (the visible GPUs'
    architectures) is kept when a GPU is visible; without one, DEFAULT_CUDA_ARCHS.
    """
    if os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip():
        return None
    import torch

    try:
        visible = torch.cuda.is_available() and torch.cuda.device_count() > 0
    except RuntimeError:  # a broken driver counts as no GPU
        visible = False
    return None if visible else DEFAULT_CUDA_ARCHS


def _parallel_compile(compiler, jobs: int) -> None:
    """Makes ``compiler.compile`` build its sources in ``jobs`` threads.

    For builds without ninja (a bare GPU machine may lack it): setuptools then
    compiles one source after another, several minutes for tvcli's. CUDA sources
    go first, one at a time (torch swaps the shared compiler executable to nvcc
    for each), then the C++ sources in parallel (they all use the same one).
    """
    from concurrent.futures import ThreadPoolExecutor

    os.environ.setdefault("TORCH_NO_COMPILER_WRAPPER", "1")  # no ccache prefix races

    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        cuda = [o for o in objects if build[o][0].endswith(".cu")]
        for obj in cuda:
            one(obj)
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(one, [o for o in objects if o not in cuda]))
        return objects

    compiler.compile = compile


def _build_ext_class():
    """torch's BuildExtension, compiling in parallel (MAX_JOBS) even without ninja."""
    from torch.utils.cpp_extension import BuildExtension

    class TvcliBuildExt(BuildExtension):
        def build_extensions(self) -> None:
            if not self.use_ninja:
                _parallel_compile(self.compiler, int(os.environ.get("MAX_JOBS") or os.cpu_count()
                                                     or 1))
            super().build_extensions()

    no_ninja = os.environ.get("TVCLI_NO_NINJA", "0") == "1"  # to test the fallback
    return TvcliBuildExt.with_options(no_python_abi_suffix=False,
                                      **({"use_ninja": False} if no_ninja else {}))


def _extensions():
    if os.environ.get("TVCLI_NO_EXT", "0") == "1":
        return [], {}
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    # -ffp-contract=off: no fused multiply-add on hosts that have one (aarch64,
    # e.g. Grace), so the host rounds as the device does under --fmad=false.
    cxx_flags = ["-O3", "-g0", "-std=c++20", "-ffp-contract=off", "-fvisibility=hidden", *openmp]
    common = dict(
        name="tvcli._C",
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=[*openmp, "-s"],
        py_limited_api=False,
    )
    if _want_cuda():
        # Kernels: csrc/cuda/*.cu (torch-free); torch glue: csrc/cuda/*.cpp.
        # --fmad=false keeps GPU results equal to the CPU's (no fused multiply-add).
        # Architectures: TORCH_CUDA_ARCH_LIST, else the visible GPUs', else
        # DEFAULT_CUDA_ARCHS (docs/building.md).
        arch_list = _cuda_arch_list()
        if arch_list is not None:
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
        sources += sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
        nvcc_flags = ["-O3", "-std=c++20", "--fmad=false", "-Xcompiler", "-fvisibility=hidden"]
        ext = CUDAExtension(
            sources=sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            **common,
        )
    else:
        ext = CppExtension(sources=sources, extra_compile_args={"cxx": cxx_flags}, **common)
    return [ext], {"build_ext": _build_ext_class()}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
