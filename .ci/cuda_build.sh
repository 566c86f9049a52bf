#!/usr/bin/env bash
# CI tier (b): the full CUDA build of the extension, without a GPU.
#
# Builds tvcli._C with FORCE_CUDA=1 against torch==2.14.1 (a CUDA 13 build) in
# its own virtual environment ($TVCLI_CUDA_VENV, default .venv-cuda, created on
# first use), in a scratch copy of the working tree so that the CPU build in
# ./tvcli is left alone. Then: the module imports, every op has both a CPU and
# a CUDA kernel registered, and the CPU test suite passes against this build
# (the GPU tests skip: no device here).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
VENV="${TVCLI_CUDA_VENV:-.venv-cuda}"
case "$VENV" in /*) ;; *) VENV="$root/$VENV" ;; esac  # used after a cd
PY="$VENV/bin/python"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-7.5;8.0;9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"

t0=$(date +%s)
if ! "$PY" -c "import torch; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  echo "== creating $VENV with torch==2.14.1"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q torch==2.14.1 setuptools wheel ninja
fi
# tvcli's runtime and test dependencies, read from pyproject.toml so that this
# list never falls behind it (torch stays the CUDA build above; a no-op once present).
mapfile -t DEPS < <("$PY" - <<'PYEOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
deps = project["dependencies"] + project["optional-dependencies"]["test"]
for d in deps:
    if not d.replace(" ", "").startswith("torch"):
        print(d)
PYEOF
)
"$PY" -m pip install -q "${DEPS[@]}"
t1=$(date +%s)
echo "== venv ready in $((t1 - t0)) s: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Tracked and untracked-but-not-ignored files: what a fresh clone would have.
git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -xf - -C "$work"
cd "$work"
# On failure, the whole log; on success, each compile step as "[k/n] source"
# and any compiler warning.
if ! FORCE_CUDA=1 "$PY" setup.py -q build_ext --inplace >build.log 2>&1; then
  cat build.log
  echo "FAIL: CUDA build"
  exit 1
fi
sed -E 's/^(\[[0-9]+\/[0-9]+\]) .* -c -c ([^ ]+) .*/\1 \2/' build.log \
  | grep -E '^\[|warning:' | grep -v SetuptoolsDeprecationWarning || true
ls tvcli/_C*.so >/dev/null  # the build must have produced the module
ls tvcli/_core*.so >/dev/null  # and the torch-free solver (CPU only) beside it
t2=$(date +%s)
echo "== CUDA build in $((t2 - t1)) s"

"$PY" - <<'PY'
import torch

import tvcli
import tvcli._extension  # noqa: F401  (tvcli imports lazily; this loads tvcli._C)

ops = ["prox_tv1d", "prox_tv1d_backward", "prox_tv1d_pn_stats", "prox_tv2d_dykstra",
       "prox_tv2d_dykstra_backward", "prox_tv2d_solve", "prox_tv2d_region_backward",
       "prox_tv_nd"]
for op in ops:
    for key in ("CPU", "CUDA"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"tvcli::{op}", key), (op, key)
print("== tvcli", tvcli.__version__, "backends:", tvcli.built_backends(),
      "| CPU and CUDA kernels registered for", ", ".join(ops))
assert tvcli.built_backends() == ["cpu", "cuda"]
from tvcli import _core  # the CLI's torch-free solver: built, and knows _C has CUDA
assert _core.cuda_engine is True
PY
"$PY" -m pytest -q -p no:cacheprovider tests
echo "== CUDA build tier done in $(( $(date +%s) - t0 )) s"
