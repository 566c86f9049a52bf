#!/usr/bin/env bash
# GPU training run: trains the job list of tvcli/learning/train/gpu.py -- the denoisers
# (FFDNet pair, DnCNN / DnCNN-TV at sigma 25 and 50), DexiNed / DexiNed-TV, the EPS
# ResNet / ResNet-TV, the three All-Conv classifiers and CAM / CAM-TV (only when
# data/gpu/wsol.pack exists: make-data --wsol DATA, docs/wsol.md) -- within a fixed wall
# budget, evaluates them and writes weights-<i>.tar (safetensors + manifest),
# results.json, results.md and log.txt into OUT (at most 7 files, each < 16 MiB).
#
#   .ci/gpu_train.sh OUT [BUDGET_S [GROUPS]]   # on the GPU machine; BUDGET_S default 300,
#                                              # GROUPS e.g. denoise,edges (default all)
#   .ci/gpu_train.sh --dry-run OUT [GROUPS]    # CPU, 3 steps per job on synthetic data (CI)
#
# The GPU machine needs python3 with torch (CUDA) and Pillow, no internet. Carry
# data/gpu/ (`make gpu-data`, ~28.4 MiB) with the checkout (docs/gpu.md). The
# extension: an already built tvcli/_C*.so is used (e.g. built by .ci/gpu_check.sh
# just before); else it is built in place (setup.py build_ext, within
# TVCLI_GPU_BUILD_S seconds, default 150; counted in BUDGET_S); if that fails the
# TV layers run on the pure-PyTorch fallback (slower; the results say which engine
# ran; the build output is then in log.txt). The whole script keeps to BUDGET_S + ~20 s.
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
PY="${PYTHON:-python3}"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" = "--dry-run" ]; then
  out="${2:?usage: $0 --dry-run OUT [GROUPS]}"
  exec "$PY" -m tvcli.learning.train.gpu run --dry-run --out "$out" ${3:+--groups "$3"}
fi
out="${1:?usage: $0 OUT [BUDGET_S [GROUPS]]}"
budget="${2:-300}"
groups="${3:-}"
mkdir -p "$out"

has_cuda_ext() {
  "$PY" - <<'PYEOF' 2>/dev/null
from tvcli import _extension as e
raise SystemExit(0 if "cuda" in e._EXT_DEVICES.get("prox_tv2d_dykstra", ()) else 1)
PYEOF
}
if ! has_cuda_ext; then
  echo "== building the CUDA extension (at most ${TVCLI_GPU_BUILD_S:-150} s)"
  # the build output goes into log.txt (a run may bring back only 8 files)
  { echo "== CUDA build"; MAX_JOBS="${MAX_JOBS:-16}" FORCE_CUDA=1 \
      TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
      timeout "${TVCLI_GPU_BUILD_S:-150}" "$PY" setup.py -q build_ext --inplace 2>&1 | tail -n 60
  } >> "$out/log.txt"
  has_cuda_ext || echo "== build failed or timed out: pure-PyTorch fallback (see log.txt)"
fi
left=$(( budget - ($(date +%s) - t0) ))
echo "== training for $left s"
"$PY" -m tvcli.learning.train.gpu run --out "$out" --budget-s "$left" ${groups:+--groups "$groups"}
rc=$?
echo "== gpu_train.sh done in $(( $(date +%s) - t0 )) s (rc $rc)"
exit $rc
