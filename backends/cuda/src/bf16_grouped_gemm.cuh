// SPDX-License-Identifier: Apache-2.0
// bf16_grouped_gemm.cuh - every hit expert's bf16 projection in one launch: Hopper's tensor
// cores (wgmma bf16, f32 accumulate) fed by TMA, for the sizes where the mma.sync kernels
// (experts_gemm.cuh) run out of issue rate and cuBLAS needs the expert sizes on the host.
//
// D[r, n] = sum over k of A[r, k] * B[e * N + n, k]   (f32 sums, stored as bf16)
//
// where r runs over the sorted rows of expert e ([offsets[e], offsets[e + 1])), A holds the
// rows [capacity, K] and B the experts' weights [experts * N, K], both K-major as the layer
// keeps them. The expert offsets stay on the device: a persistent grid walks the tiles (128
// rows of one expert x 128 or 256 output columns), so there is no host round trip and no
// allocation. A tile past an expert's last row reads the next expert's rows (or zeros past
// the matrix) and never stores them.
#pragma once

#include <cuda.h>  // CUtensorMap
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moereg::cuda {

// A row-major bf16 matrix [rows, cols] (cols a multiple of 64, the base 16-byte aligned) as the
// kernel's TMA reads it. Throws when the driver refuses it (the message names `what`).
struct bf16_matrix {
  CUtensorMap map;
  CUtensorMap half;  // the same matrix in boxes of 64 rows (A of a tile split by columns; B's gate
                     // and up halves with the fused SiLU)
};
bf16_matrix make_bf16_matrix(const __nv_bfloat16* base, uint64_t rows, uint64_t cols, const char* what);

struct bf16_grouped_problem {
  bf16_matrix a;        // [capacity, k]: the sorted rows
  bf16_matrix b;        // [experts * n, k]
  // Set: the last expert (experts - 1) is read from b_last [n, k] rather than from b: one more
  // weight matrix in the same launch, e.g. a layer's shared expert with every token one of its rows.
  bool has_last;
  bf16_matrix b_last;
  const int* offsets;   // [experts + 1], device
  int experts, n, k;    // n a multiple of 128, k of 64
  __nv_bfloat16* d;     // [capacity, n]
  // Set (gate/up with the fused SiLU; n = 2I a multiple of 256, B the [gate | up] rows of each
  // expert): each 256-column tile takes 128 gate rows and the matching 128 up rows of B (as two
  // blocks of 64 gate and 64 up) and writes h = SiLU(gate) * up [capacity, n / 2] here, the
  // bits the separate pass writes; d is not written.
  __nv_bfloat16* h = nullptr;
  // Set: A's rows are gathered rather than read from `a` (no sorted copy of x): sorted row r
  // reads row gather[r] of a_rows [tokens, k], and with has_last the last expert's rows (r from
  // offsets[experts - 1]) read a_rows' rows in order (a shared expert's: every token), by
  // cp.async into the layout TMA gives. Same products in the same order: the same bits.
  const int* gather = nullptr;
  const __nv_bfloat16* a_rows = nullptr;
};

// The output columns of a problem's tiles: 256 where n is a multiple of 256, else 128.
inline int bf16_grouped_tile_columns(int n) { return n % 256 == 0 ? 256 : 128; }

// Enqueues the grouped GEMM on `stream`. rows_bound: at least offsets[experts] (the tiles are
// counted on the device; this only bounds the grid). experts <= 4096.
void launch_bf16_grouped_gemm(const bf16_grouped_problem& p, int rows_bound, cudaStream_t stream);

}  // namespace moereg::cuda
