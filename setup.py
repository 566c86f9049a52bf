"""Build script for tvcli's compiled engine (tvcli._C, and tvcli._core: its n-D TV
solver without torch, for the command line).

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

        def build_extension(self, ext) -> None:
            if ext.name != CORE_MODULE:
                super().build_extension(ext)
                return
            # The torch-free module is an optimisation of the command line only:
            # without it the CLI takes the torch path, so a failed build warns.
            try:
                super().build_extension(ext)
            except Exception as exc:  # compiler or ninja errors alike
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
                print(f"warning: {CORE_MODULE} not built ({first}); the command line will "
                      "import torch for every image", file=sys.stderr)

    no_ninja = os.environ.get("TVCLI_NO_NINJA", "0") == "1"  # to test the fallback
    return TvcliBuildExt.with_options(no_python_abi_suffix=False,
                                      **({"use_ninja": False} if no_ninja else {}))


#: The torch-free build of the n-D TV solver (csrc/py/core_module.cpp): the command
#: line's default smoothing runs through it without importing torch (issue 28).
CORE_MODULE = "tvcli._core"


def _core_extension(cxx_flags: list[str], openmp: list[str], cuda: bool):
    """tvcli._core: a plain CPython module (no torch headers or libraries), built with
    the torch extension's C++ flags so that it rounds as the torch op does. Needs
    OpenMP (Linux); elsewhere None, and the CLI takes the torch path."""
    from setuptools import Extension

    if not openmp:
        return None
    return Extension(
        CORE_MODULE,
        sources=["csrc/py/core_module.cpp"],
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=[("TVCLI_CUDA_ENGINE", "1")] if cuda else [],
        extra_compile_args=list(cxx_flags),
        extra_link_args=[*openmp, "-s"],
        language="c++",
    )


def _extensions():
    if os.environ.get("TVCLI_NO_EXT", "0") == "1":
        return [], {}
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    # -ffp-contract=off: no fused multiply-add on hosts that have one (aarch64,
    # e.g. Grace), so the host rounds as the device does under --fmad=false.
    # -fno-math-errno: sqrt need not set errno, so loops with sqrt vectorise (the
    # n-D solver's projection onto the l2 ball and its certificate: 15-18 % of an
    # isotropic solve); sqrt and division round the same either way (IEEE), so
    # results are unchanged, bit for bit (tests/tools/compare_builds.py).
    cxx_flags = ["-O3", "-g0", "-std=c++20", "-ffp-contract=off", "-fno-math-errno",
                 "-fvisibility=hidden", *openmp]
    common = dict(
        name="tvcli._C",
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=[*openmp, "-s"],
        py_limited_api=False,
    )
    cuda = _want_cuda()
    core = _core_extension(cxx_flags, openmp, cuda)
    if cuda:
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
    return [ext] + ([core] if core is not None else []), {"build_ext": _build_ext_class()}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
