// SPDX-License-Identifier: Apache-2.0
// bf16_grouped_experts.cu - bf16 experts on the grouped wgmma GEMM (see bf16_grouped_experts.h).
#include "bf16_grouped_experts.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda_moe.h"
#include "moe_kernels.cuh"

namespace moereg::cuda {

namespace {

// xs[r] = x[sorted_token[r]] for the sorted rows r < offsets[E], then (shared_tokens > 0: the
// shared expert's rows) x[r - offsets[E]] for the next shared_tokens rows. A block per row of
// the bound, 16 bytes a thread.
__global__ void sort_rows(const __nv_bfloat16* __restrict__ x, const int* __restrict__ sorted_token,
                          const int* __restrict__ offsets, int experts, int shared_tokens, int hidden,
                          __nv_bfloat16* __restrict__ xs) {
  const int r = blockIdx.x, routed = offsets[experts];
  if (r >= routed + shared_tokens) return;
  const int token = r < routed ? sorted_token[r] : r - routed;
  const uint4* src = reinterpret_cast<const uint4*>(x + static_cast<size_t>(token) * hidden);
  uint4* dst = reinterpret_cast<uint4*>(xs + static_cast<size_t>(r) * hidden);
  for (int c = threadIdx.x; c < hidden / 8; c += blockDim.x) dst[c] = src[c];
}

// h[r, c] = SiLU(g[r, c]) * g[r, I + c] for the rows r < offsets[experts], two columns a thread
// (the cuBLAS path's arithmetic: cublas_experts.cu).
__global__ void silu_rows(const __nv_bfloat16* __restrict__ g, const int* __restrict__ offsets, int experts, int inter,
                          __nv_bfloat16* __restrict__ h) {
  const int c = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= inter) return;
  const int rows = offsets[experts];
  for (int r = blockIdx.y; r < rows; r += gridDim.y) {
    const __nv_bfloat16* gr = g + static_cast<size_t>(r) * 2 * inter;
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gr + c));
    const float2 u = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gr + inter + c));
    const float s0 = a.x / (1.f + __expf(-a.x)) * u.x, s1 = a.y / (1.f + __expf(-a.y)) * u.y;
    *reinterpret_cast<__nv_bfloat162*>(h + static_cast<size_t>(r) * inter + c) = __floats2bfloat162_rn(s0, s1);
  }
}

}  // namespace

bool bf16_grouped_experts::fits(long long experts, long long hidden, long long inter, std::string* why) {
  std::string w;
  if (hidden % 128 || inter % 64)
    w = "hidden " + std::to_string(hidden) + ", intermediate " + std::to_string(inter) +
        " (the grouped bf16 GEMM needs hidden a multiple of 128 and intermediate of 64)";
  else if (experts + 1 > 4096)
    w = std::to_string(experts) + " experts (the grouped bf16 GEMM takes at most 4095 and a shared expert)";
  if (why) *why = w;
  return w.empty();
}

bf16_grouped_experts::bf16_grouped_experts(const __nv_bfloat16* w13, const __nv_bfloat16* w2, int experts, int hidden,
                                           int inter, bool fused_silu, bool gather)
    : E_(experts), H_(hidden), I_(inter), fused_silu_(fused_silu && (2 * inter) % 256 == 0), gather_(gather),
      rows_(experts) {
  w13_ = make_bf16_matrix(w13, static_cast<uint64_t>(E_) * 2 * I_, static_cast<uint64_t>(H_), "bf16 gate/up weights");
  w2_ = make_bf16_matrix(w2, static_cast<uint64_t>(E_) * H_, static_cast<uint64_t>(I_), "bf16 down weights");
  path_ = "wgmma_bf16 (grouped bf16 GEMM, one launch a projection; gate/up 128x" +
          std::to_string(bf16_grouped_tile_columns(2 * I_)) + (fused_silu_ ? " with the SiLU" : "") +
          (gather_ ? " gathering x's rows" : "") + ", down 128x" +
          std::to_string(bf16_grouped_tile_columns(H_)) + " tiles)";
}

void bf16_grouped_experts::add_shared(const __nv_bfloat16* w13, const __nv_bfloat16* w2) {
  sw13_ = make_bf16_matrix(w13, static_cast<uint64_t>(2 * I_), static_cast<uint64_t>(H_), "bf16 shared gate/up weights");
  sw2_ = make_bf16_matrix(w2, static_cast<uint64_t>(H_), static_cast<uint64_t>(I_), "bf16 shared down weights");
  rows_.add_shared("bf16 grouped path");
  path_.insert(path_.size() - 1, "; the shared expert as one more expert of both GEMMs");
}

bf16_grouped_experts::~bf16_grouped_experts() {
  for (void* p : {static_cast<void*>(xs_), static_cast<void*>(g_), static_cast<void*>(h_)})
    if (p) cudaFree(p);
}

void bf16_grouped_experts::ensure(int rows, cudaStream_t stream) {
  if (rows <= capacity_) return;
  check(cudaStreamSynchronize(stream), "bf16 grouped path: work buffers");
  for (void** p : {reinterpret_cast<void**>(&xs_), reinterpret_cast<void**>(&g_), reinterpret_cast<void**>(&h_)}) {
    cudaFree(*p);
    *p = nullptr;
  }
  capacity_ = 0;
  const size_t R = static_cast<size_t>(rows), H = H_, I = I_;
  check(cudaMalloc(&xs_, R * H * 2), "bf16 grouped path: sorted rows");
  if (!fused_silu_) check(cudaMalloc(&g_, R * 2 * I * 2), "bf16 grouped path: gate/up");
  check(cudaMalloc(&h_, R * I * 2), "bf16 grouped path: h");
  xs_map_ = make_bf16_matrix(xs_, R, H, "bf16 sorted rows");
  h_map_ = make_bf16_matrix(h_, R, I, "bf16 h");
  capacity_ = rows;
}

void bf16_grouped_experts::run_routed(const routed_rows& in, float* out, cudaStream_t stream, const float* shared_gate) {
  if (in.top_k > max_combine_top_k)
    throw unsupported("bf16 grouped path: top_k " + std::to_string(in.top_k) + " > 32");
  const int bound = rows_.bound(in);
  if (bound == 0) return;
  ensure(bound, stream);
  const int* offsets = rows_.offsets(in, stream);
  // Gathering reads x's rows with 16-byte copies: x must be 16-byte aligned (H is a multiple of 128).
  const bool gather = gather_ && (reinterpret_cast<uintptr_t>(in.xb) & 15) == 0;
  if (!gather) {
    sort_rows<<<bound, 128, 0, stream>>>(in.xb, in.sorted_token, in.offsets, E_, rows_.shared_count(in), H_, xs_);
    check_launch("bf16 grouped path: sorted rows");
  }
  const int experts = rows_.experts();
  bf16_grouped_problem p{};
  if (gather) {
    p.gather = in.sorted_token;
    p.a_rows = in.xb;
  }
  p.offsets = offsets;
  p.experts = experts;
  p.a = xs_map_;
  p.b = w13_;
  p.has_last = rows_.shared();
  p.b_last = sw13_;
  p.n = 2 * I_;
  p.k = H_;
  p.d = g_;
  p.h = fused_silu_ ? h_ : nullptr;
  launch_bf16_grouped_gemm(p, bound, stream);
  if (!fused_silu_) {
    const dim3 grid((I_ / 2 + 127) / 128, std::min(bound, 65535));
    silu_rows<<<grid, 128, 0, stream>>>(g_, offsets, experts, I_, h_);
    check_launch("bf16 grouped path: SiLU");
  }
  p.h = nullptr;
  p.gather = nullptr;
  // The sorted rows are read: down's output goes where they were.
  p.a = h_map_;
  p.b = w2_;
  p.b_last = sw2_;
  p.n = H_;
  p.k = I_;
  p.d = xs_;
  launch_bf16_grouped_gemm(p, bound, stream);
  rows_.combine(xs_, in, H_, out, stream, shared_gate);
}

}  // namespace moereg::cuda
