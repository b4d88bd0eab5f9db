// SPDX-License-Identifier: Apache-2.0
// routing_kernels.cu - what runs before the expert GEMMs: router logits and top-k (softmax or
// sigmoid, bias, groups, renorm, scaling), the shared expert's gate, and the permutation of
// the token slots into expert order for passes too large for prepare_kernel.cu's one block
// (count, one-block scan with the tile list, scatter). Launchers declared in moe_kernels.cuh.
#include "moe_kernels.cuh"
#include "warp_reduce.cuh"

#include <cub/block/block_scan.cuh>

#include <cfloat>
#include <climits>
#include <stdexcept>
#include <string>

namespace moereg::cuda {

namespace {

// ---------------------------------------------------------------- routing

template <int TB, bool XBF16>
__global__ void router_logits_kernel(const void* __restrict__ xv, const float* __restrict__ router, int tokens,
                                     int hidden, int experts, float* __restrict__ logits) {
  extern __shared__ float xs[];  // [TB][hidden]
  const int t0 = blockIdx.x * TB;
  for (int i = threadIdx.x; i < TB * hidden; i += blockDim.x) {
    int tb = i / hidden, h = i - tb * hidden;
    float v = 0.f;
    if (t0 + tb < tokens) {
      size_t idx = static_cast<size_t>(t0 + tb) * hidden + h;
      v = XBF16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(xv)[idx]) : static_cast<const float*>(xv)[idx];
    }
    xs[i] = v;
  }
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
  for (int e = warp; e < experts; e += nwarps) {
    float acc[TB];
#pragma unroll
    for (int tb = 0; tb < TB; ++tb) acc[tb] = 0.f;
    const float* wr = router + static_cast<size_t>(e) * hidden;
    for (int h = lane * 4; h < hidden; h += 128) {
      float4 w = *reinterpret_cast<const float4*>(wr + h);
#pragma unroll
      for (int tb = 0; tb < TB; ++tb) {
        float4 xx = *reinterpret_cast<const float4*>(xs + tb * hidden + h);
        acc[tb] += w.x * xx.x + w.y * xx.y + w.z * xx.z + w.w * xx.w;
      }
    }
#pragma unroll
    for (int tb = 0; tb < TB; ++tb) {
      float s = warp_sum(acc[tb]);
      if (lane == 0 && t0 + tb < tokens) logits[static_cast<size_t>(t0 + tb) * experts + e] = s;
    }
  }
}

constexpr int topk_warps = 4;
constexpr float masked_score = -1e30f;  // below any real score, above "taken" (-inf)

__global__ void router_topk_kernel(const float* __restrict__ logits, const float* __restrict__ bias, route_config cfg,
                                   int tokens, void* ids, int ids_i64, float* __restrict__ weights) {
  // cfg.round_logits is set by the launcher only when the activations are bf16.
  extern __shared__ float sm[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int E = cfg.num_experts;
  float* p = sm + warp * (2 * E + 64);
  float* sel = p + E;
  float* gsc = sel + E;  // up to 64 groups
  const int t = blockIdx.x * topk_warps + warp;
  if (t >= tokens) return;
  const float* l = logits + static_cast<size_t>(t) * E;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) {
    float v = l[e];
    if (cfg.round_logits) v = __bfloat162float(__float2bfloat16(v));
    p[e] = v;
    mx = fmaxf(mx, v);
  }
  mx = warp_max(mx);
  __syncwarp();
  if (cfg.sigmoid) {
    for (int e = lane; e < E; e += 32) p[e] = 1.f / (1.f + expf(-p[e]));
  } else {
    float s = 0.f;
    for (int e = lane; e < E; e += 32) {
      float v = expf(p[e] - mx);
      p[e] = v;
      s += v;
    }
    s = warp_sum(s);
    for (int e = lane; e < E; e += 32) p[e] = p[e] / s;
  }
  for (int e = lane; e < E; e += 32) sel[e] = p[e] + (bias ? bias[e] : 0.f);
  __syncwarp();
  if (cfg.n_group > 1 && cfg.topk_group < cfg.n_group && cfg.group_score != 0) {
    const int gs = E / cfg.n_group;
    for (int g = lane; g < cfg.n_group; g += 32) {
      float a = -INFINITY, b = -INFINITY;
      for (int j = 0; j < gs; ++j) {
        float v = sel[g * gs + j];
        if (v > a) {
          b = a;
          a = v;
        } else if (v > b) {
          b = v;
        }
      }
      gsc[g] = cfg.group_score == 1 ? a : a + b;
    }
    __syncwarp();
    // keep the topk_group best groups: mark kept ones with +inf
    for (int r = 0; r < cfg.topk_group; ++r) {
      float bv = -INFINITY;
      int bi = INT_MAX;
      for (int g = lane; g < cfg.n_group; g += 32) {
        float v = gsc[g];
        if (v != INFINITY && (v > bv || (v == bv && g < bi))) {
          bv = v;
          bi = g;
        }
      }
      warp_argmax(bv, bi);
      __syncwarp();
      if (lane == 0 && bi < cfg.n_group) gsc[bi] = INFINITY;
      __syncwarp();
    }
    for (int e = lane; e < E; e += 32)
      if (gsc[e / gs] != INFINITY) sel[e] = masked_score;
    __syncwarp();
  }
  float wsum = 0.f;
  float myw = 0.f;
  int myid = 0;
  for (int k = 0; k < cfg.top_k; ++k) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int e = lane; e < E; e += 32) {
      float v = sel[e];
      if (v > bv || (v == bv && e < bi)) {
        bv = v;
        bi = e;
      }
    }
    warp_argmax(bv, bi);
    const float w = p[bi];
    wsum += w;
    if (lane == k) {
      myw = w;
      myid = bi;
    }
    __syncwarp();
    if (lane == 0) sel[bi] = -INFINITY;
    __syncwarp();
  }
  if (lane < cfg.top_k) {
    float w = myw;
    if (cfg.renormalize) w = w / (wsum + cfg.renorm_eps);
    w *= cfg.scaling;
    size_t o = static_cast<size_t>(t) * cfg.top_k + lane;
    weights[o] = w;
    if (ids_i64)
      static_cast<int64_t*>(ids)[o] = myid;
    else
      static_cast<int32_t*>(ids)[o] = myid;
  }
}

__global__ void shared_gate_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ g,
                                   int tokens, int hidden, float* __restrict__ gate) {
  const int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (t >= tokens) return;
  float s = 0.f;
  for (int h = lane; h < hidden; h += 32)
    s += __bfloat162float(x[static_cast<size_t>(t) * hidden + h]) * __bfloat162float(g[h]);
  s = warp_sum(s);
  if (lane == 0) gate[t] = 1.f / (1.f + expf(-s));
}

// ---------------------------------------------------------------- permutation

__global__ void count_kernel(const void* ids, int ids_i64, int slots, int experts, int* counts, int* rank) {
  int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= slots) return;
  int64_t e = ids_i64 ? static_cast<const int64_t*>(ids)[s] : static_cast<const int32_t*>(ids)[s];
  rank[s] = (e >= 0 && e < experts) ? atomicAdd(&counts[e], 1) : -1;
}

constexpr int scan_threads = 1024;

__global__ void scan_kernel(int experts, int bm, const int* counts, int* offsets, int* tile_expert, int* tile_row0,
                            int* num_tiles) {
  using scan_t = cub::BlockScan<int, scan_threads>;
  __shared__ typename scan_t::TempStorage tmp;
  const int e = threadIdx.x;
  const int c = e < experts ? counts[e] : 0;
  const int tiles = (c + bm - 1) / bm;
  int off = 0, total = 0;
  scan_t(tmp).ExclusiveSum(c, off, total);
  __syncthreads();
  int toff = 0, ttotal = 0;
  scan_t(tmp).ExclusiveSum(tiles, toff, ttotal);
  if (e < experts) {
    offsets[e] = off;
    for (int i = 0; i < tiles; ++i) {
      tile_expert[toff + i] = e;
      tile_row0[toff + i] = i * bm;
    }
  }
  if (e == 0) {
    offsets[experts] = total;
    *num_tiles = ttotal;
  }
}

__global__ void scatter_kernel(const void* ids, int ids_i64, const float* weights, int slots, int top_k,
                               const int* offsets, const int* rank, int* sorted_token, float* sorted_weight) {
  int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= slots || rank[s] < 0) return;
  int64_t e = ids_i64 ? static_cast<const int64_t*>(ids)[s] : static_cast<const int32_t*>(ids)[s];
  int p = offsets[e] + rank[s];
  sorted_token[p] = s / top_k;
  sorted_weight[p] = weights[s];
}

}  // namespace

void launch_router_logits(const void* x, bool x_bf16, const float* router, int tokens, int hidden, int experts,
                          float* logits, cudaStream_t stream) {
  constexpr int threads = 256;
  const size_t row = static_cast<size_t>(hidden) * sizeof(float);
  int tb = row * 4 <= 200 * 1024 ? 4 : row * 2 <= 200 * 1024 ? 2 : 1;
  if (row > 200 * 1024) throw std::runtime_error("router: hidden size too large for the CUDA router");
  const size_t smem = row * tb;
  auto launch = [&](void (*kernel)(const void*, const float*, int, int, int, float*)) {
    if (smem > 48 * 1024) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    kernel<<<(tokens + tb - 1) / tb, threads, smem, stream>>>(x, router, tokens, hidden, experts, logits);
  };
  if (x_bf16) {
    if (tb == 4) launch(router_logits_kernel<4, true>);
    else if (tb == 2) launch(router_logits_kernel<2, true>);
    else launch(router_logits_kernel<1, true>);
  } else {
    if (tb == 4) launch(router_logits_kernel<4, false>);
    else if (tb == 2) launch(router_logits_kernel<2, false>);
    else launch(router_logits_kernel<1, false>);
  }
  check_launch("router logits");
}

void launch_router_topk(const float* logits, const float* bias, const route_config& cfg, int tokens, void* ids,
                        bool ids_i64, float* weights, cudaStream_t stream) {
  const size_t smem = topk_warps * (2 * cfg.num_experts + 64) * sizeof(float);
  router_topk_kernel<<<(tokens + topk_warps - 1) / topk_warps, topk_warps * 32, smem, stream>>>(
      logits, bias, cfg, tokens, ids, ids_i64 ? 1 : 0, weights);
  check_launch("router top-k");
}

void launch_permute(const void* ids, bool ids_i64, const float* weights, int tokens, int top_k, int experts, int bm,
                    const permutation& perm, cudaStream_t stream) {
  if (experts > scan_threads) throw std::runtime_error("CUDA backend supports at most 1024 experts");
  const int slots = tokens * top_k;
  cudaMemsetAsync(perm.counts, 0, experts * sizeof(int), stream);
  count_kernel<<<(slots + 255) / 256, 256, 0, stream>>>(ids, ids_i64 ? 1 : 0, slots, experts, perm.counts, perm.rank);
  check_launch("expert count");
  scan_kernel<<<1, scan_threads, 0, stream>>>(experts, bm, perm.counts, perm.offsets, perm.tile_expert,
                                              perm.tile_row0, perm.num_tiles);
  check_launch("expert scan");
  scatter_kernel<<<(slots + 255) / 256, 256, 0, stream>>>(ids, ids_i64 ? 1 : 0, weights, slots, top_k, perm.offsets,
                                                          perm.rank, perm.sorted_token, perm.sorted_weight);
  check_launch("expert scatter");
}

void launch_shared_gate(const __nv_bfloat16* x, const __nv_bfloat16* g, int tokens, int hidden, float* gate,
                        cudaStream_t stream) {
  shared_gate_kernel<<<(tokens + 7) / 8, 256, 0, stream>>>(x, g, tokens, hidden, gate);
  check_launch("shared-expert gate");
}

}  // namespace moereg::cuda
