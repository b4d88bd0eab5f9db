// SPDX-License-Identifier: Apache-2.0
// prepare_kernel.cu - everything a pass needs before its expert GEMMs, in one launch: x to
// bf16 (and each row's largest magnitude for the exact-product F8 kernels), the output and
// the h magnitudes zeroed, and for up to prepare_route_slots token slots the permutation
// into expert order as well (one block: shared-memory counts, a block scan, the scatter)
// beside the blocks that convert a row each.
// At decode these were six graph nodes (a copy, two memsets, count, scan, scatter), each a
// serialized launch of almost no work; one node instead is most of what the prologue costs.
#include "moe_kernels.cuh"
#include "warp_reduce.cuh"

#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <stdexcept>

namespace moereg::cuda {

namespace {

constexpr int threads = 1024;  // the scan covers up to 1024 experts, one a thread
constexpr int slots_per_thread = prepare_route_slots / threads;
static_assert(prepare_route_slots % threads == 0, "whole slots per thread");

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Block 0: the permutation, as launch_permute computes it (counts, offsets, tile list,
// rank, sorted token and weight per slot).
__device__ void route_block(const prepare_args& a) {
  using scan_t = cub::BlockScan<int, threads>;
  __shared__ typename scan_t::TempStorage tmp;
  __shared__ int count[threads];
  const int tid = threadIdx.x, slots = a.tokens * a.top_k;
  if (tid < a.experts) count[tid] = 0;
  __syncthreads();
  int expert[slots_per_thread], rank[slots_per_thread];
#pragma unroll
  for (int i = 0; i < slots_per_thread; ++i) {
    const int s = tid + i * threads;
    expert[i] = -1;
    rank[i] = -1;
    if (s < slots) {
      const int64_t e = a.ids_i64 ? static_cast<const int64_t*>(a.ids)[s] : static_cast<const int32_t*>(a.ids)[s];
      if (e >= 0 && e < a.experts) {
        expert[i] = static_cast<int>(e);
        rank[i] = atomicAdd(&count[e], 1);
      }
      a.perm.rank[s] = rank[i];
    }
  }
  __syncthreads();
  const int c = tid < a.experts ? count[tid] : 0;
  const int tiles = (c + a.bm - 1) / a.bm;
  int off = 0, total = 0, toff = 0, ttotal = 0;
  scan_t(tmp).ExclusiveSum(c, off, total);
  __syncthreads();
  scan_t(tmp).ExclusiveSum(tiles, toff, ttotal);
  if (tid < a.experts) {
    a.perm.counts[tid] = c;
    a.perm.offsets[tid] = off;
    for (int i = 0; i < tiles; ++i) {
      a.perm.tile_expert[toff + i] = tid;
      a.perm.tile_row0[toff + i] = i * a.bm;
    }
    count[tid] = off;  // every thread has read its count: the array now holds the offsets
  }
  if (tid == 0) {
    a.perm.offsets[a.experts] = total;
    *a.perm.num_tiles = ttotal;
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < slots_per_thread; ++i) {
    const int s = tid + i * threads;
    if (s < slots && expert[i] >= 0) {
      const int pos = count[expert[i]] + rank[i];
      a.perm.sorted_token[pos] = s / a.top_k;
      a.perm.sorted_weight[pos] = a.weights[s];
    }
  }
}

// x to bf16 (and the row's largest magnitude), a block per row: at decode one row is all the
// work, and a single warp walking it would wait out a memory round trip per 256 values.
__device__ void convert_row(const prepare_args& a, int t, bool vec) {
  __shared__ float part[threads / 32];
  const size_t row = static_cast<size_t>(t) * a.hidden;
  float m = 0.f;
  for (int h = threadIdx.x * 8; h < a.hidden; h += threads * 8) {
    float v[8];
    if (a.x_bf16) {
      const __nv_bfloat16* src = static_cast<const __nv_bfloat16*>(a.x) + row + h;
      uint4 raw;
      if (vec) {
        raw = *reinterpret_cast<const uint4*>(src);
      } else {
        uint16_t* r = reinterpret_cast<uint16_t*>(&raw);
        for (int j = 0; j < 8; ++j) r[j] = reinterpret_cast<const uint16_t*>(src)[j];
      }
      const uint32_t* w = reinterpret_cast<const uint32_t*>(&raw);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        v[2 * j] = __uint_as_float(w[j] << 16);
        v[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
      }
    } else {
      const float* src = static_cast<const float*>(a.x) + row + h;
      if (vec) {
        const float4 lo = reinterpret_cast<const float4*>(src)[0], hi = reinterpret_cast<const float4*>(src)[1];
        v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
      } else {
        for (int j = 0; j < 8; ++j) v[j] = src[j];
      }
    }
    uint4 out;
    uint32_t* o = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
      o[j] = *reinterpret_cast<const uint32_t*>(&b);
      m = fmaxf(m, fmaxf(fabsf(__low2float(b)), fabsf(__high2float(b))));
    }
    if (vec) {
      *reinterpret_cast<uint4*>(a.xb + row + h) = out;
    } else {
      for (int j = 0; j < 8; ++j) reinterpret_cast<uint16_t*>(a.xb + row + h)[j] = reinterpret_cast<const uint16_t*>(&out)[j];
    }
  }
  if (a.amax) {
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
      m = warp_max(part[threadIdx.x]);
      if (threadIdx.x == 0) a.amax[t] = m;
    }
    __syncthreads();  // part is reused by the next row
  }
}

// Block 0 permutes when there is a permutation to make; the other blocks (all of them when
// there is none) convert rows and zero the outputs.
__global__ void __launch_bounds__(threads) prepare_kernel(prepare_args a) {
  const int first = a.ids ? 1 : 0;
  if (a.ids && blockIdx.x == 0) {
    route_block(a);
    return;
  }
  const int block = blockIdx.x - first, blocks = gridDim.x - first;
  const bool vec = aligned16(a.x) && aligned16(a.xb);
  for (int t = block; t < a.tokens; t += blocks) convert_row(a, t, vec);
  const int64_t tid = static_cast<int64_t>(block) * threads + threadIdx.x, stride = static_cast<int64_t>(blocks) * threads;
  if (aligned16(a.out)) {
    for (int64_t i = tid; i < a.out_count / 4; i += stride) reinterpret_cast<float4*>(a.out)[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int64_t i = a.out_count / 4 * 4 + tid; i < a.out_count; i += stride) a.out[i] = 0.f;
  } else {
    for (int64_t i = tid; i < a.out_count; i += stride) a.out[i] = 0.f;
  }
  for (int64_t i = tid; i < a.h_amax_count; i += stride) a.h_amax[i] = 0u;
}

}  // namespace

void launch_prepare(const prepare_args& a, cudaStream_t stream) {
  if (a.hidden % 8 != 0) throw std::runtime_error("prepare: hidden must be a multiple of 8");
  if (a.ids && (a.experts > threads || a.tokens * a.top_k > prepare_route_slots))
    throw std::runtime_error("prepare: more experts or token slots than one block permutes");
  // A block per row up to 264 (two per SM), and enough that no thread zeroes more than a few
  // vectors of out; plus the permuting block.
  const int64_t by_out = (a.out_count + threads * 16 - 1) / (threads * 16);
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(264, std::max<int64_t>(a.tokens, by_out))) + (a.ids ? 1 : 0);
  prepare_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(a);
  check_launch("pass prepare");
}

}  // namespace moereg::cuda
