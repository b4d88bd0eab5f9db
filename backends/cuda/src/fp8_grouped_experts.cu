// SPDX-License-Identifier: Apache-2.0
// fp8_grouped_experts.cu - F8 experts on the grouped FP8 GEMM (see fp8_grouped_experts.h).
#include "fp8_grouped_experts.h"

#include <algorithm>
#include <string>

#include "cuda_moe.h"
#include "f8_quantize.cuh"
#include "moe_kernels.cuh"

namespace moereg::cuda {

namespace {

// xq[r] = e4m3 of x[sorted_token[r]] per 128 columns, for the sorted rows r < offsets[E], then
// (shared_tokens > 0: the shared expert's rows) x[r - offsets[E]] for the next shared_tokens
// rows (sorted_token null: xq[t] of x[t] for every token). One block of 4 warps per row of
// the bound; a warp per 128-column group.
__global__ void quantize_x(const __nv_bfloat16* __restrict__ x, const int* __restrict__ sorted_token,
                           const int* __restrict__ offsets, int experts, int shared_tokens, int hidden, int pitch,
                           uint8_t* __restrict__ xq, float* __restrict__ xs) {
  const int r = blockIdx.x, lane = threadIdx.x & 31;
  int token = r;
  if (sorted_token) {
    const int routed = offsets[experts];
    if (r >= routed + shared_tokens) return;
    token = r < routed ? sorted_token[r] : r - routed;
  }
  const __nv_bfloat16* row = x + static_cast<size_t>(token) * hidden;
  for (int g = threadIdx.x >> 5; g < hidden / f8_group; g += blockDim.x >> 5)
    quantize_bf16_group(row + g * f8_group, xq + static_cast<size_t>(r) * hidden + g * f8_group,
                        xs + static_cast<size_t>(g) * pitch + r, lane);
}

// hq[r] = e4m3 of SiLU(gate) * up per 128 columns (gate|up: g[r] = [2I] bf16), same layout.
__global__ void silu_quantize_rows(const __nv_bfloat16* __restrict__ gu, const int* __restrict__ offsets, int experts,
                                   int inter, int pitch, uint8_t* __restrict__ hq, float* __restrict__ hs) {
  const int r = blockIdx.x, lane = threadIdx.x & 31;
  if (r >= offsets[experts]) return;
  const __nv_bfloat16* gate = gu + static_cast<size_t>(r) * 2 * inter;
  for (int g = threadIdx.x >> 5; g < inter / f8_group; g += blockDim.x >> 5) {
    float v[4];
    for (int h = 0; h < 2; ++h) {
      const int c = g * f8_group + natural_col(lane, 2 * h);
      const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gate + c));
      const float2 u = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gate + inter + c));
      v[2 * h] = a.x / (1.f + __expf(-a.x)) * u.x;
      v[2 * h + 1] = a.y / (1.f + __expf(-a.y)) * u.y;
    }
    quantize_group(v, hq + static_cast<size_t>(r) * inter + g * f8_group, hs + static_cast<size_t>(g) * pitch + r,
                   lane);
  }
}

}  // namespace

bool fp8_grouped_experts::fits(long long experts, long long hidden, long long inter, long long b0, long long b1,
                               std::string* why) {
  std::string w = f8_block_misfit(hidden, inter, b0, b1, "the grouped FP8 GEMM");
  if (w.empty() && experts > 4096)
    w = std::to_string(experts) + " experts (the grouped FP8 GEMM takes at most 4096)";
  if (why) *why = w;
  return w.empty();
}

fp8_grouped_experts::fp8_grouped_experts(const uint8_t* w13, const uint8_t* w2, const float* w13_scale,
                                         const float* w2_scale, int experts, int hidden, int inter, bool gather,
                                         bool wide, bool fuse)
    : E_(experts), H_(hidden), I_(inter), gather_(gather), wide_(wide), fuse_(fuse), s13_(w13_scale), s2_(w2_scale), rows_(experts) {
  w13_ = make_f8_matrix(w13, static_cast<uint64_t>(E_) * 2 * I_, static_cast<uint64_t>(H_), "FP8 gate/up weights");
  w2_ = make_f8_matrix(w2, static_cast<uint64_t>(E_) * H_, static_cast<uint64_t>(I_), "FP8 down weights");
  path_ = "wgmma_fp8 (e4m3 activations per 128 columns, grouped FP8 GEMM, block scales per 128 k; gate/up 128x" +
          std::to_string(f8_grouped_tile_columns(wide_, gather_, 2 * I_)) +
          (fuse_silu() ? " with SiLU and h's quantization" : "") + ", down 128x" +
          std::to_string(f8_grouped_tile_columns(wide_, false, H_)) + " tiles)";
}

void fp8_grouped_experts::add_shared(const uint8_t* w13, const uint8_t* w2, const float* w13_scale,
                                     const float* w2_scale) {
  if (E_ + 1 > 4096) throw unsupported("FP8 grouped path: the shared expert would make it more than 4096 experts");
  sw13_ = make_f8_matrix(w13, static_cast<uint64_t>(2 * I_), static_cast<uint64_t>(H_), "FP8 shared gate/up weights");
  sw2_ = make_f8_matrix(w2, static_cast<uint64_t>(H_), static_cast<uint64_t>(I_), "FP8 shared down weights");
  ss13_ = w13_scale;
  ss2_ = w2_scale;
  rows_.add_shared("FP8 grouped path");
  path_.insert(path_.size() - 1, "; the shared expert as one more expert of both GEMMs");
}

fp8_grouped_experts::~fp8_grouped_experts() {
  for (void* p : {static_cast<void*>(xq_), static_cast<void*>(xs_), static_cast<void*>(g_), static_cast<void*>(hq_),
                  static_cast<void*>(hs_), static_cast<void*>(y_)})
    if (p) cudaFree(p);
}

void fp8_grouped_experts::ensure(int rows, int tokens, cudaStream_t stream) {
  if (rows <= capacity_ && (!gather_ || tokens <= xrows_)) return;
  rows = std::max(rows, capacity_);
  tokens = std::max(tokens, xrows_);
  check(cudaStreamSynchronize(stream), "FP8 grouped path: work buffers");
  for (void** p : {reinterpret_cast<void**>(&xq_), reinterpret_cast<void**>(&xs_), reinterpret_cast<void**>(&g_),
                   reinterpret_cast<void**>(&hq_), reinterpret_cast<void**>(&hs_), reinterpret_cast<void**>(&y_)}) {
    cudaFree(*p);
    *p = nullptr;
  }
  capacity_ = pitch_ = xrows_ = xpitch_ = 0;
  const size_t R = static_cast<size_t>(rows), P = (R + 3) / 4 * 4, H = H_, I = I_;
  const size_t X = gather_ ? static_cast<size_t>(tokens) : R, XP = (X + 3) / 4 * 4;
  check(cudaMalloc(&xq_, X * H), "FP8 grouped path: quantized x");
  check(cudaMalloc(&xs_, XP * (H / f8_group) * 4), "FP8 grouped path: x scales");
  // 128 x 256 tiles write h straight from the gate/up GEMM (fp8_grouped_gemm.cuh): no gate/up rows.
  if (!fuse_silu()) check(cudaMalloc(&g_, R * 2 * I * 2), "FP8 grouped path: gate/up");
  check(cudaMalloc(&hq_, R * I), "FP8 grouped path: quantized h");
  check(cudaMalloc(&hs_, P * (I / f8_group) * 4), "FP8 grouped path: h scales");
  check(cudaMalloc(&y_, R * H * 2), "FP8 grouped path: down output");
  xq_map_ = make_f8_matrix(xq_, X, H, "FP8 quantized x");
  hq_map_ = make_f8_matrix(hq_, R, I, "FP8 quantized h");
  capacity_ = rows;
  pitch_ = static_cast<int>(P);
  xrows_ = static_cast<int>(X);
  xpitch_ = static_cast<int>(XP);
}

void fp8_grouped_experts::run_routed(const routed_rows& in, float* out, cudaStream_t stream, const float* shared_gate) {
  if (in.top_k > max_combine_top_k)
    throw unsupported("FP8 grouped path: top_k " + std::to_string(in.top_k) + " > 32");
  const int shared_count = rows_.shared_count(in), bound = rows_.bound(in);
  if (bound == 0) return;
  ensure(bound, in.tokens, stream);
  const int* offsets = rows_.offsets(in, stream);
  quantize_x<<<gather_ ? in.tokens : bound, 128, 0, stream>>>(in.xb, gather_ ? nullptr : in.sorted_token, in.offsets,
                                                             E_, shared_count, H_, xpitch_, xq_, xs_);
  check_launch("FP8 grouped path: quantize x");
  const int experts = rows_.experts();
  f8_grouped_problem p{};
  p.offsets = offsets;
  p.experts = experts;
  p.a_pitch = xpitch_;
  p.wide = wide_;
  p.a = xq_map_;
  p.a_scale = xs_;
  if (gather_) {
    p.gather = in.sorted_token;
    p.a_rows = xq_;
  }
  p.b = w13_;
  p.b_scale = s13_;
  if (rows_.shared()) {
    p.b_last = sw13_;
    p.b_last_scale = ss13_;
  }
  p.n = 2 * I_;
  p.k = H_;
  p.d = g_;
  if (fuse_silu()) {  // the GEMM writes h quantized; g_ is not allocated
    p.hq = hq_;
    p.hs = hs_;
    p.hs_pitch = pitch_;
  }
  launch_f8_grouped_gemm(p, bound, stream);
  if (!fuse_silu()) {
    silu_quantize_rows<<<bound, 128, 0, stream>>>(g_, offsets, experts, I_, pitch_, hq_, hs_);
    check_launch("FP8 grouped path: SiLU and quantize h");
  }
  p.a = hq_map_;
  p.a_scale = hs_;
  p.a_pitch = pitch_;
  p.gather = nullptr;
  p.a_rows = nullptr;
  p.hq = nullptr;
  p.hs = nullptr;
  p.b = w2_;
  p.b_scale = s2_;
  if (rows_.shared()) {
    p.b_last = sw2_;
    p.b_last_scale = ss2_;
  }
  p.n = H_;
  p.k = I_;
  p.d = y_;
  launch_f8_grouped_gemm(p, bound, stream);
  rows_.combine(y_, in, H_, out, stream, shared_gate);
}

}  // namespace moereg::cuda
