"""Builds and runs the torch-free C++ self-tests of the solver core under
AddressSanitizer + UBSan: every read and write must stay inside its signal or
image, on adversarial inputs and on rows of 2-D Dykstra iterates."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize(("name", "flags"), [
    ("core_selftest", []),
    ("tv2d_core_selftest", []),
    # The Dykstra backward's portable path (device builds, other compilers) and its
    # vector path as g++ < 12 builds it (__builtin_shuffle).
    ("tv2d_core_selftest", ["-DTVCLI_NO_SIMD"]),
    ("tv2d_core_selftest", ["-DTVCLI_SIMD_GNU_SHUFFLE"]),
    # n-D dual FISTA (csrc/core/tv_nd_fgp.h): line sweeps, ring sweep, per-pixel twins.
    ("tv_nd_core_selftest", []),
])
def test_core_selftest_under_sanitizers(tmp_path, name, flags):
    exe = tmp_path / name
    cmd = ["g++", "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=all", "-Wall", "-Wextra", "-Werror", *flags,
           f"-I{ROOT / 'csrc'}", str(ROOT / f"tests/cpp/{name}.cpp"), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK (0 failures)" in res.stdout
