#!/usr/bin/env bash
# GPU training run: trains the job list of tvcli/gpu_train.py (DnCNN / DnCNN-TV at
# sigma 25 and 50, the FFDNet-style pair) within a fixed wall budget, evaluates on
# CBSD68 / Kodak24 and writes weights.tar (safetensors + manifest), results.json,
# results.md and log.txt into OUT.
#
#   .ci/gpu_train.sh OUT [BUDGET_S]      # on the GPU machine; BUDGET_S default 300
#   .ci/gpu_train.sh --dry-run OUT       # CPU, 3 steps per job on synthetic data (CI)
#
# The GPU machine has python3 with torch (CUDA) and nothing else: no internet, no
# numpy/Pillow/safetensors needed. Carry data/gpu/ (`make gpu-data`, ~45 MiB) with
# the checkout. The extension: an already built tvcli/_C*.so is used; else it is
# built in place (setup.py build_ext, within TVCLI_GPU_BUILD_S seconds, default
# 150); if that fails the TV layers run on the pure-PyTorch fallback (slower; the
# results say which engine ran). The whole script keeps to BUDGET_S + ~20 s.
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
PY="${PYTHON:-python3}"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" = "--dry-run" ]; then
  out="${2:?usage: $0 --dry-run OUT}"
  exec "$PY" -m tvcli.gpu_train run --dry-run --out "$out"
fi
out="${1:?usage: $0 OUT [BUDGET_S]}"
budget="${2:-300}"
mkdir -p "$out"

has_cuda_ext() {
  "$PY" - <<'EOF' 2>/dev/null
from tvcli import _extension as e
raise SystemExit(0 if "cuda" in e._EXT_DEVICES.get("prox_tv2d_dykstra", ()) else 1)
EOF
}
if ! has_cuda_ext; then
  echo "== building the CUDA extension (at most ${TVCLI_GPU_BUILD_S:-150} s)"
  MAX_JOBS="${MAX_JOBS:-16}" FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
    timeout "${TVCLI_GPU_BUILD_S:-150}" "$PY" setup.py -q build_ext --inplace \
    > "$out/build.log" 2>&1 || echo "== build failed or timed out: pure-PyTorch fallback (see build.log)"
  has_cuda_ext && rm -f "$out/build.log"
fi
left=$(( budget - ($(date +%s) - t0) ))
echo "== training for $left s"
"$PY" -m tvcli.gpu_train run --out "$out" --budget-s "$left"
rc=$?
echo "== gpu_train.sh done in $(( $(date +%s) - t0 )) s (rc $rc)"
exit $rc
