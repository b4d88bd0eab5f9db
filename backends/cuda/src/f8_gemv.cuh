// SPDX-License-Identifier: Apache-2.0
// f8_gemv.cuh - F8_E4M3 experts at T = 1 as matrix-vector products (backend option
// f8_decode=gemv): one token's top-k experts, and an F8 shared expert as one more slot, read
// row by row straight from memory into registers, no tensor cores and no shared-memory weight
// tiles. At T = 1 the 16-row mma tile uses one row in sixteen and spends its instructions on
// staging and converting weight fragments; here each 16-byte chunk of a weight row (16 e4m3
// values, in the fragment order the upload left them) meets the 16 values of x it multiplies,
// which every row of the warp shares from shared memory, as f32 products (e4m3 -> f16 exact,
// -> f32) summed in f32 and scaled by the chunk's block scale: the products q x s x x of the
// exact-product kernels, h kept in f32 (not rounded to bf16). Two launches: gate/up (h =
// SiLU(gate) * up per slot), then down, adding w x (h . W_down) into out with atomics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moereg::cuda {

struct f8_gemv_problem {
  const __nv_bfloat16* x = nullptr;  // [H] bf16: the token (the prepare kernel's xb)
  int hidden = 0;
  // Routed slots: expert ids[k] (int32 or int64; outside [0, E): skipped) with weight weights[k].
  const void* ids = nullptr;
  bool ids_i64 = false;
  const float* weights = nullptr;
  int top_k = 0;
  int num_experts = 0;
  int inter = 0;
  const uint8_t* w13 = nullptr;  // [E, 2I, H] e4m3, fragment order (host::stage_f8_fragments)
  const uint8_t* w2 = nullptr;   // [E, H, I]
  const float* s13 = nullptr;    // [E, 2 ceil(I/b0), ceil(H/b1)]
  const float* s2 = nullptr;     // [E, ceil(H/b0), ceil(I/b1)]
  // The shared expert as slot top_k (sw13 null: none here), weight *shared_gate or 1.
  int shared_inter = 0;
  const uint8_t* sw13 = nullptr;
  const uint8_t* sw2 = nullptr;
  const float* ss13 = nullptr;
  const float* ss2 = nullptr;
  const float* shared_gate = nullptr;
  int b0 = 1, b1 = 1;  // scale block; b1 a multiple of 16 (a 16-byte chunk inside one block)
  float* h = nullptr;    // [slots, max(I, Is)] f32 scratch
  float* out = nullptr;  // [H] f32, zeroed before, added into
};

// Whether experts of these sizes fit: H, I (and Is) multiples of 16, b1 a multiple of 16.
bool f8_gemv_fits(int hidden, int inter, int shared_inter, int b1);

// Enqueues the two launches on `stream` (no synchronization).
void launch_f8_gemv(const f8_gemv_problem& p, cudaStream_t stream);

}  // namespace moereg::cuda
