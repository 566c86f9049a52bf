#!/usr/bin/env bash
# The one-shot GPU check (issue 12, docs/gpu.md): build the CUDA engine, run the
# GPU tests, run the device benchmarks, on a bare machine with a GPU.
#
#   bash .ci/gpu_check.sh [OUTDIR]            # OUTDIR default: $OUT, else ./gpu_check_out
#   bash .ci/gpu_check.sh --cpu-dry-run [OUTDIR]
#
# Assumes what such a machine has: python3 with torch (a CUDA build), numpy,
# pytest, typer, rich, imageio, safetensors, tifffile; nvcc; no internet (nothing
# is downloaded or pip-installed). The extension is built in place
# (setup.py build_ext --inplace) and used through PYTHONPATH; when setuptools is
# too old for pyproject.toml's metadata, the build runs in a scratch copy
# without pyproject.toml.
#
# Every phase is time-boxed (`timeout`) and writes its log into OUTDIR as it
# goes, so a failing or hanging phase still leaves the others' results. The
# whole run stays within TVCLI_GPU_CHECK_BUDGET seconds (default 200): each phase
# gets at most what is left (limits x TVCLI_GPU_CHECK_SCALE, default 1; 4 in a dry run). OUTDIR ends up with at most 7 files:
#   summary.txt   one line per phase: name, exit status, seconds (written first, appended)
#   env.txt       GPU, driver, python, torch, nvcc, setuptools, git revision
#   build.log     the CUDA build
#   tests.log     pytest tests/test_cuda.py (-rA: one line per test)
#   tests.xml     the same as JUnit XML
#   bench.jsonl   one JSON object per benchmark section (tvcli bench --json)
#   bench.log     the benchmarks' stderr
#
# --cpu-dry-run: the same plumbing with the CPU engine and tiny sizes (CI runs
# it: tests/test_gpu_check.py), so that a run on a GPU never fails on a typo. It
# uses the existing build (no compile) and runs the benchmarks with --device cpu.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

DRY=0
OUTDIR=""
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $arg" >&2; exit 2 ;;
    *) OUTDIR="$arg" ;;
  esac
done
OUTDIR="${OUTDIR:-${OUT:-$ROOT/gpu_check_out}}"
mkdir -p "$OUTDIR" || { echo "gpu_check: cannot create $OUTDIR" >&2; exit 2; }
OUTDIR="$(cd "$OUTDIR" && pwd)"

PY="${TVCLI_PYTHON:-python3}"
if [ "$DRY" = 1 ] && [ -z "${TVCLI_PYTHON:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  PY="$ROOT/.venv/bin/python"
fi
BUDGET="${TVCLI_GPU_CHECK_BUDGET:-200}"
# Phase limits are multiplied by this (the dry run is about plumbing, not time, and
# CI machines are slow and shared: 4 there by default).
SCALE="${TVCLI_GPU_CHECK_SCALE:-$([ "$DRY" = 1 ] && echo 4 || echo 1)}"
export MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export PY ROOT OUTDIR
START=$(date +%s)
SUMMARY="$OUTDIR/summary.txt"
(cd "$OUTDIR" && rm -f summary.txt env.txt build.log tests.log tests.xml bench.jsonl bench.log \
   .bench_*.json)
echo "# gpu_check $(date -u +%FT%TZ) dry_run=$DRY budget_s=$BUDGET limit_scale=$SCALE python=$PY" >"$SUMMARY"

# phase NAME LIMIT_S LOG CMD...: runs CMD under `timeout` (at most the budget
# left), stdout+stderr appended to LOG, and records "NAME rc=... s=..." in the summary.
phase() {
  local name="$1" limit="$2" log="$3"
  shift 3
  limit=$(( limit * SCALE ))
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt 5 ]; then
    echo "$name rc=skipped s=0 (budget spent)" >>"$SUMMARY"
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  local t0=$(date +%s)
  echo "== $name (limit ${limit} s) $(date -u +%T)" >>"$log"
  # bash -c: CMD may be one of the functions below (exported), which `timeout`
  # alone could not run.
  timeout --kill-after=5 "$limit" bash -c '"$@"' _ "$@" >>"$log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  [ "$rc" = 124 ] && echo "== $name: TIMED OUT after ${limit} s" >>"$log"
  echo "$name rc=$rc s=$dt" >>"$SUMMARY"
  echo "gpu_check: $name rc=$rc (${dt} s)" >&2
  return "$rc"
}

# ---------------------------------------------------------------- environment
env_report() {
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $(nproc) cores"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
       "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  local nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  [ -x "$nvcc" ] || nvcc="$(command -v nvcc || true)"
  [ -n "$nvcc" ] && "$nvcc" --version | tail -2
  "$PY" - <<'PY'
import importlib, platform
import torch
print("python", platform.python_version(), "| torch", torch.__version__, "cuda", torch.version.cuda)
print("cuda available:", torch.cuda.is_available(),
      "| devices:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
if torch.cuda.is_available():
    print("capability:", torch.cuda.get_device_capability(0))
for m in ("setuptools", "numpy", "pytest", "typer", "rich", "imageio", "safetensors",
          "tifffile", "ninja"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", type(e).__name__)
PY
}
export -f env_report
phase env 30 "$OUTDIR/env.txt" env_report

# ---------------------------------------------------------------- build
build_cuda() {
  # One architecture, the GPU's own (fast to compile), unless the caller set a list.
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    TORCH_CUDA_ARCH_LIST="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')" || return 1
    export TORCH_CUDA_ARCH_LIST
  fi
  if [ -z "${CUDA_HOME:-}" ]; then  # /usr/local/cuda, else where nvcc is on PATH
    CUDA_HOME=/usr/local/cuda
    if [ ! -x "$CUDA_HOME/bin/nvcc" ] && command -v nvcc >/dev/null; then
      CUDA_HOME="$(dirname "$(dirname "$(command -v nvcc)")")"
    fi
  fi
  export FORCE_CUDA=1 CUDA_HOME
  echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS CUDA_HOME=$CUDA_HOME"
  rm -f tvcli/_C*.so
  if "$PY" setup.py build_ext --inplace; then
    :
  else
    # Old setuptools cannot read pyproject.toml's metadata: build in a copy without it.
    echo "== in-place build failed; retrying in a scratch copy without pyproject.toml"
    local work
    work="$(mktemp -d)"
    tar --exclude=./.git --exclude=./.venv --exclude=./.venv-cuda --exclude=./build \
        --exclude="./$(basename "$OUTDIR")" -cf - . | tar -xf - -C "$work" || return 1
    rm -f "$work/pyproject.toml"
    (cd "$work" && "$PY" setup.py build_ext --inplace) || return 1
    cp "$work"/tvcli/_C*.so tvcli/ || return 1
    rm -rf "$work"
  fi
  "$PY" -c 'import tvcli, tvcli._extension as e; b = tvcli.built_backends(); print("backends", b, "| kernels", {k: sorted(v) for k, v in e._EXT_DEVICES.items()}); assert "cuda" in b'
}
check_cpu_build() {  # dry run: no compile, just the same final check on the CPU build
  "$PY" -c 'import tvcli, tvcli._extension as e; b = tvcli.built_backends(); print("backends", b, "| kernels", {k: sorted(v) for k, v in e._EXT_DEVICES.items()}); assert "cpu" in b'
}
export -f build_cuda check_cpu_build
if [ "$DRY" = 1 ]; then
  phase build 60 "$OUTDIR/build.log" check_cpu_build
else
  phase build 170 "$OUTDIR/build.log" build_cuda
fi
BUILD_RC=$?

# ---------------------------------------------------------------- tests
if [ "$BUILD_RC" = 0 ]; then
  phase tests 110 "$OUTDIR/tests.log" "$PY" -m pytest -q -rA -p no:cacheprovider \
    --junitxml="$OUTDIR/tests.xml" tests/test_cuda.py
else
  echo "tests rc=skipped s=0 (build failed)" >>"$SUMMARY"
fi

# ---------------------------------------------------------------- benchmarks
# Sections of `tvcli bench` (tvcli/bench/suite.py), one process each so that a
# crash or a timeout in one leaves the others; each appends one JSON line.
bench_section() {
  local sec="$1" dev="$2" reps="$3"
  shift 3
  local tmp="$OUTDIR/.bench_$sec.json"
  "$PY" -m tvcli bench --json --no-peers --device "$dev" --section "$sec" --repeats "$reps" \
    "$@" >"$tmp" || { local rc=$?; rm -f "$tmp"; return $rc; }
  "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); d["section"] = sys.argv[2]; print(json.dumps(d))' \
    "$tmp" "$sec" >>"$OUTDIR/bench.jsonl"
  local rc=$?
  rm -f "$tmp"
  return $rc
}
export -f bench_section
if [ "$BUILD_RC" = 0 ]; then
  if [ "$DRY" = 1 ]; then DEV=cpu; QUICK=(--quick); else DEV=cuda; QUICK=(); fi
  phase bench_table1 40 "$OUTDIR/bench.log" bench_section table1 "$DEV" 25 "${QUICK[@]}"
  phase bench_layer 30 "$OUTDIR/bench.log" bench_section layer "$DEV" 25 "${QUICK[@]}"
  phase bench_converged 45 "$OUTDIR/bench.log" bench_section converged "$DEV" 10 "${QUICK[@]}"
  phase bench_large 45 "$OUTDIR/bench.log" bench_section large "$DEV" 5 "${QUICK[@]}"
else
  echo "bench rc=skipped s=0 (build failed)" >>"$SUMMARY"
fi

echo "total s=$(( $(date +%s) - START ))" >>"$SUMMARY"
cat "$SUMMARY" >&2
# Exit status: non-zero when any phase failed.
! grep -Eq 'rc=([1-9]|skipped)' "$SUMMARY"
