// SPDX-License-Identifier: Apache-2.0
// fp8_grouped_gemm.cuh - every hit expert's FP8 projection in one launch: Hopper's FP8 tensor
// cores (wgmma e4m3, f32 accumulate) fed by TMA, with DeepSeek-V3's block scales applied in
// the accumulation.
//
// D[r, n] = sum over 128-column blocks kb of  sa[kb][r] * sb[e][n / 128][kb] * (A[r, kb] . B[e * N + n, kb])
//
// where r runs over the sorted rows of expert e ([offsets[e], offsets[e + 1])), A holds the
// rows' e4m3 activations (one f32 scale per row and 128 columns), B the experts' e4m3 weights
// (one f32 scale per 128 x 128 block, the ABI's grid). Each 128-column block's products are
// summed by the tensor cores unscaled and added to the f32 result times their two scales, as
// DeepSeek-V3's recipe (and DeepGEMM) promote them. D is written as bf16 rows, sorted order.
//
// The expert offsets stay on the device: a persistent grid walks the tiles (128 rows of one
// expert x 128 output columns) that the offsets give, so there is no host round trip and
// the launch can be captured in a CUDA graph. A tile past an expert's last row reads the next
// expert's rows (or zeros past the matrix) and never stores them.
#pragma once

#include <cuda.h>  // CUtensorMap (a plain struct; the driver is reached through cudart)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "f8_quantize.cuh"

namespace moereg::cuda {

// A row-major e4m3 matrix [rows, cols] (cols a multiple of 128, the base 16-byte aligned) as
// the kernel's TMA reads it: 128 x 128 boxes, 128-byte swizzle. Throws when the driver
// refuses it (the message names `what`).
struct f8_matrix {
  CUtensorMap map;
};
f8_matrix make_f8_matrix(const uint8_t* base, uint64_t rows, uint64_t cols, const char* what);

struct f8_grouped_problem {
  f8_matrix a;                 // [capacity, k]: sorted rows (unused when `gather` is set)
  const float* a_scale;        // [k / 128][a_pitch]: a column of row scales per k block
  int a_pitch;                 // >= capacity
  // Set: A is read as a_rows[gather[r]] (a_rows [*, k] e4m3, 16-byte aligned rows), scales
  // a_scale[kb * a_pitch + gather[r]]: x quantized once per token rather than per routed row.
  const int* gather;
  const uint8_t* a_rows;
  f8_matrix b;                 // [experts * n, k]
  const float* b_scale;        // [experts][n / 128][k / 128]
  // Set: the last expert (experts - 1) is another matrix, read from b_last [n, k] with scales
  // b_last_scale [n / 128][k / 128] rather than from b: one more weight matrix in the same
  // launch, e.g. a layer's shared expert with every token one of its rows.
  f8_matrix b_last;
  const float* b_last_scale;
  const int* offsets;          // [experts + 1], device
  int experts, n, k;           // n and k multiples of 128
  __nv_bfloat16* d;            // [capacity, n]
  // Tiles of 128 rows x 256 columns where n is a multiple of 256 and A is read by TMA (no
  // gather); else 128 x 128. The same results to the bit; A read from L2 half as often.
  bool wide;
  // Set (with 256-column tiles; B the fused [gate | up] weights, n = 2I): each tile computes
  // 128 gate and the matching 128 up columns and writes h = SiLU(gate) * up quantized to e4m3
  // per 128 columns, as silu_quantize_rows would from d (gate and up rounded to bf16 first, the
  // same operations: bit-identical), into hq [rows, I] (fragment order) and hs [I / 128][hs_pitch];
  // d is not written.
  uint8_t* hq;
  float* hs;
  int hs_pitch;
};

// The output columns of a problem's tiles: 256 where `wide` applies (A by TMA, n a multiple of
// 256), else 128. The `hq` output needs 256.
inline int f8_grouped_tile_columns(bool wide, bool gather, int n) { return wide && !gather && n % 256 == 0 ? 256 : 128; }
inline int f8_grouped_tile_columns(const f8_grouped_problem& p) { return f8_grouped_tile_columns(p.wide, p.gather, p.n); }

// Enqueues the grouped GEMM on `stream`. rows_bound: at least offsets[experts] (the tiles are
// counted on the device; this only bounds the grid). experts <= 4096.
void launch_f8_grouped_gemm(const f8_grouped_problem& p, int rows_bound, cudaStream_t stream);

}  // namespace moereg::cuda
