// Paper-mode 2-D TV (K proximal-Dykstra iterations) for one small image with many
// lines solved at once in AVX-512 lanes (csrc/cpu/tv2d_paper_avx512.cpp), and its
// backward with 8 lines per register.
//
// Same contract and the same bits as core::tv2d_dykstra_forward<T, double> with
// LineSolver::kCondat (csrc/core/tv2d_dykstra.h): every lane runs Condat's sweep
// (csrc/core/tv1d_direct.h) with the scalar code's operations in the scalar code's
// order, only its branches are masked selects. Host-only; built on x86-64 with
// g++ / clang, chosen at run time on CPUs with AVX-512 F/DQ/BW/VL.
#pragma once

#include <stdint.h>

namespace tvcli {
namespace cpu {

// Whether this build and this CPU run the AVX-512 paper-mode forward, and it is
// not switched off (TVCLI_PAPER_SIMD=0 in the environment, read on every call so
// that tests and benchmarks can compare both paths in one process).
bool paper_simd_enabled();

// Doubles of workspace for tv2d_dykstra_forward_simd on an h x w image.
int64_t paper_simd_workspace(int64_t h, int64_t w);

// As core::tv2d_dykstra_forward<T, double>(x, y, sgn, h, w, iters, lam, ws, kCondat,
// sharp) (sharp: y = 2 x - prox, core::sharpen_store):
// x, y: h*w contiguous; sgn: 2*iters planes of h*w int8 (row pass k: plane 2k,
// element (i, j) = sign(Z[i][j+1] - Z[i][j]); column pass k: plane 2k+1, element
// (i, j) = sign(Y[i+1][j] - Y[i][j])); lam finite >= 0; x may hold NaN/Inf.
// ws: paper_simd_workspace(h, w) doubles, 64-byte alignment not required.
// Only call when paper_simd_enabled().
template <typename T>
void tv2d_dykstra_forward_simd(const T* x, T* y, int8_t* sgn, int64_t h, int64_t w,
                               int64_t iters, double lam, double* ws, bool sharp);

// As core::tv2d_dykstra_backward<T, double>(sgn, g, gx, h, w, iters, identity, ws),
// bit for bit (gx and the returned dL/dlam); ws: core::tv2d_dykstra_workspace(h, w)
// doubles. Only call when paper_simd_enabled().
template <typename T>
double tv2d_dykstra_backward_simd(const int8_t* sgn, const T* g, T* gx, int64_t h, int64_t w,
                                  int64_t iters, bool identity, double* ws);

}  // namespace cpu
}  // namespace tvcli
