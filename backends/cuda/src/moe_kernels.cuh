// SPDX-License-Identifier: Apache-2.0
// moe_kernels.cuh - the device kernels of the CUDA fused-MoE backend and their launchers.
// Every launcher enqueues on the given stream and never synchronizes: a forward is a chain
// of launches with no host round trip (expert counts stay on the device).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace moereg::cuda {

// Throws std::runtime_error naming the kernel when its launch failed (after each <<<>>>).
inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA launch of ") + what + " failed: " + cudaGetErrorString(e));
}

// Routing as moereg_routing_params describes it, minus the tensors.
struct route_config {
  int num_experts = 0;
  int top_k = 0;
  int sigmoid = 0;        // 0 softmax, 1 sigmoid
  int round_logits = 0;   // 1: logits rounded to bf16 (activation dtype) before scoring
  int n_group = 1;
  int topk_group = 1;
  int group_score = 0;    // 0 none, 1 max, 2 top2 sum
  int renormalize = 0;
  float renorm_eps = 0.f;
  float scaling = 1.f;
};

// logits[T, E] (f32) = x[T, H] . router[E, H]^T, accumulated in f32. x is f32 or bf16.
void launch_router_logits(const void* x, bool x_bf16, const float* router, int tokens, int hidden, int experts,
                          float* logits, cudaStream_t stream);

// Top-k per token from logits; ids as int32 or int64, weights f32.
void launch_router_topk(const float* logits, const float* bias, const route_config& cfg, int tokens,
                        void* ids, bool ids_i64, float* weights, cudaStream_t stream);

// Workspace of one permutation (token slots sorted by expert) plus its tile list.
struct permutation {
  int* counts = nullptr;        // [E] (also scratch for ranks)
  int* offsets = nullptr;       // [E + 1]
  int* rank = nullptr;          // [T*K] position of each slot inside its expert
  int* sorted_token = nullptr;  // [T*K]
  float* sorted_weight = nullptr;  // [T*K]
  int* tile_expert = nullptr;   // [max tiles]
  int* tile_row0 = nullptr;     // [max tiles]
  int* num_tiles = nullptr;     // [1]
};

// Fill `perm` from topk ids/weights (ids int32 or int64). Slots whose id is outside [0, E)
// are dropped. bm: rows per GEMM tile.
void launch_permute(const void* ids, bool ids_i64, const float* weights, int tokens, int top_k, int experts, int bm,
                    const permutation& perm, cudaStream_t stream);

// launch_prepare permutes in one block up to this many token slots (tokens x top_k); more go
// through launch_permute.
constexpr int prepare_route_slots = 4096;

// What launch_prepare does before a pass: x (f32 or bf16, [T, H]) to bf16 into xb, and each
// row's largest |bf16 value| into amax (when set); out[0, out_count) and h_amax[0,
// h_amax_count) zeroed; and when ids is set (at most prepare_route_slots slots and 1024
// experts) the permutation that launch_permute would compute.
struct prepare_args {
  const void* x = nullptr;
  bool x_bf16 = false;
  int tokens = 0;
  int hidden = 0;
  __nv_bfloat16* xb = nullptr;
  float* amax = nullptr;
  float* out = nullptr;
  int64_t out_count = 0;
  unsigned* h_amax = nullptr;
  int64_t h_amax_count = 0;
  const void* ids = nullptr;  // null: no permutation here
  bool ids_i64 = false;
  const float* weights = nullptr;
  int top_k = 0;
  int experts = 0;
  int bm = 16;
  permutation perm;
};
void launch_prepare(const prepare_args& a, cudaStream_t stream);

// Which tile shape the grouped GEMMs use.
enum class tile_config { m16, m64, m128 };
int tile_rows(tile_config c);
// The kernel a tile shape runs, for bf16 or F8 experts (exact: f8_exact_products holds).
const char* tile_name(tile_config c, bool f8 = false, bool exact = false);
// Whether F8 experts with block scales scale_b1 columns wide run the exact-product kernels
// (e4m3 -> f16 mma, each k tile inside one scale block: its scale applied to the tile's sum)
// on tile shape c; otherwise each weight is dequantized to bf16(q x s) before the mma.
bool f8_exact_products(int scale_b1, int hidden, int inter, tile_config c);
// Upper bound of row tiles for `slots` sorted rows over `experts` groups.
int max_row_tiles(int slots, int experts, int bm);

// One grouped expert pass. Rows of group g are rows [offsets[g], offsets[g+1]) of the sorted
// order; dense mode (dense_rows > 0) is a single group of dense_rows rows, row r = token r.
struct gemm_problem {
  const __nv_bfloat16* x = nullptr;  // [T, H] bf16, activations
  const __nv_bfloat16* w13 = nullptr;  // [G, 2I, H]
  const __nv_bfloat16* w2 = nullptr;   // [G, H, I]
  int hidden = 0;
  int inter = 0;
  const int* offsets = nullptr;
  const int* sorted_token = nullptr;
  const float* sorted_weight = nullptr;  // per sorted row; dense mode: per token, or null for 1
  const int* tile_expert = nullptr;
  const int* tile_row0 = nullptr;
  const int* num_tiles = nullptr;
  int grid_rows = 0;        // row tiles launched (upper bound; extra blocks exit)
  int dense_rows = 0;
  __nv_bfloat16* h = nullptr;  // [rows, I] scratch, sorted order
  float* out = nullptr;        // [T, H] accumulated into (atomics)
  // F8_E4M3 experts (set instead of w13 / w2): the bytes as stored, [G, 2I, H] and [G, H, I],
  // with F32 block scales in multiplier form on the ABI's grids (moereg_moe_weights):
  // w13_scale [G, 2*ceil(I/b0), ceil(H/b1)] (gate rows, then up rows, each on its own grid),
  // w2_scale [G, ceil(H/b0), ceil(I/b1)]. Each weight tile is dequantized in shared memory to
  // bf16 = round(q * s), the values `convert --dtype bf16` writes, so the products are those
  // of the bf16 layer. Needs H and I multiples of 16 and b1 a multiple of 8 or >= max(H, I).
  const uint8_t* w13_f8 = nullptr;
  const uint8_t* w2_f8 = nullptr;
  const float* w13_scale = nullptr;
  const float* w2_scale = nullptr;
  int scale_b0 = 1, scale_b1 = 1;
  // Exact-product F8 kernels (f8_exact_products): the largest |x| of each token's bf16 row,
  // and a zeroed [rows] array the gate/up GEMM fills with each sorted row's largest |h| (float
  // bits) for the down GEMM.
  const float* x_amax = nullptr;
  unsigned* h_amax = nullptr;
  // Slot tiles (T = 1 with bf16 x, no shared expert): grid_rows = top_k tiles of one row, tile y
  // = slot y (expert slot_ids[y], h row y, token y / top_k, weight sorted_weight[y]); gate/up
  // zeroes zero_out[0, zero_count) (a multiple of 4 floats, 16-byte aligned) first. Replaces
  // the prepare kernel: a T = 1 forward is the two GEMMs.
  const void* slot_ids = nullptr;
  bool slot_ids_i64 = false;
  int num_experts = 0;
  int top_k = 0;
  float* zero_out = nullptr;
  int64_t zero_count = 0;
  // Decode launch shapes: m16 GEMMs on fewer columns a CTA (more CTAs, so more SMs stream
  // weights) - narrow 0 never, 1 64 columns where 128 would give fewer CTAs than sm_count,
  // 2 the widest of 128 / 64 / 32 (bf16) giving two CTAs an SM, else the narrowest.
  int sm_count = 0;
  int narrow = 0;
  // Programmatic dependent launch: the down GEMM is launched while gate/up runs, streams its
  // first weight tiles into shared memory, then waits for h (griddepcontrol); gate/up waits
  // the same way for what was enqueued before it.
  bool pdl = false;
};

// The columns per CTA each GEMM of a pass ran with.
struct launch_shape {
  int gate_up_columns = 0;
  int down_columns = 0;
};

// h = silu(x W_gate^T) * (x W_up^T), then out[token] += w * (h W_down^T). F8_E4M3 weights
// when p.w13_f8 is set, bf16 otherwise.
launch_shape launch_experts(const gemm_problem& p, tile_config c, cudaStream_t stream);

// gate[t] = sigmoid(x[t] . g) for the shared-expert gate; g bf16 [H].
void launch_shared_gate(const __nv_bfloat16* x, const __nv_bfloat16* g, int tokens, int hidden, float* gate,
                        cudaStream_t stream);

}  // namespace moereg::cuda
