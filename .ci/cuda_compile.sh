#!/usr/bin/env bash
# CI tier (a): every CUDA source compiles warning-free for the oldest and the
# current architectures, with no register spills. Needs nvcc only (no GPU, no
# torch): the kernels in csrc/cuda/*.cu are torch-free, and tests/cuda/*.cu
# compile the other header-only core solvers as device code. Prints ptxas's
# register / spill report for the record and the compile time per arch.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC="${NVCC:-${CUDA_HOME:-/usr/local/cuda}/bin/nvcc}"
ARCHS="${TVCLI_CUDA_ARCHS:-75 80 90}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$NVCC" --version | tail -1
shopt -s nullglob
sources=(csrc/cuda/*.cu tests/cuda/*.cu)
if [ ${#sources[@]} -eq 0 ]; then echo "no .cu files"; exit 1; fi
status=0
for src in "${sources[@]}"; do
  for arch in $ARCHS; do
    log="$out/$(basename "$src").sm_$arch.log"
    t0=$(date +%s%N)
    # Same code-generation flags as setup.py's CUDA build (-O3, --fmad=false).
    if ! "$NVCC" -c -std=c++20 -O3 --fmad=false -Werror all-warnings \
        -arch="sm_$arch" -Xptxas -v -Icsrc "$src" -o "$out/k.o" >"$log" 2>&1; then
      cat "$log"; echo "FAIL: $src sm_$arch"; status=1; continue
    fi
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf '== %s sm_%s: %d.%01d s\n' "$src" "$arch" $((ms / 1000)) $((ms % 1000 / 100))
    # One line per kernel: mangled name shortened, registers, stack, spills.
    awk '/Compiling entry function/ { match($0, /(prox_direct|prox_pn|backward)_kernelI[fd]|dykstra_(forward|backward)_checkI[fd]|dykstra_(forward|backward)_(fused|lines)_kernelI[fd][fd]|fista(_store)?_kernel|region_backward_kernelI[fd]/);
                                       k = substr($0, RSTART, RLENGTH) }
         /spill stores/ { sp = $0; sub(/^ +/, "", sp) }
         /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/);
                                   printf "   %-34s %s; %s\n", k, substr($0, RSTART, RLENGTH), sp }' "$log"
    if grep -E '[1-9][0-9]* bytes spill (stores|loads)' "$log" >/dev/null; then
      echo "FAIL: register spills in $src for sm_$arch"; status=1
    fi
    if grep -Ei 'warning' "$log" >/dev/null; then
      grep -i warning "$log"; echo "FAIL: warnings in $src for sm_$arch"; status=1
    fi
  done
done
exit $status
