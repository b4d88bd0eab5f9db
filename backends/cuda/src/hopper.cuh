// SPDX-License-Identifier: Apache-2.0
// hopper.cuh - what the two grouped tensor-core GEMMs (fp8_grouped_gemm.cu: e4m3 with block
// scales; bf16_grouped_gemm.cu) share on sm_90a: mbarriers, TMA loads into 128-byte swizzled
// tiles, wgmma descriptors and fences, register reallocation between warpgroups, and the walk
// of a persistent grid over the tiles of the experts' sorted rows (expert offsets on the device).
#pragma once

#include <cuda.h>  // CUtensorMap
#include <cuda_runtime.h>

#include <cstdint>

#include "ptx.cuh"

namespace moereg::cuda {

__device__ __forceinline__ void mbar_init(uint64_t* b, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}
// Returns once the barrier's phase of this parity has completed (labels are local to the braces).
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred P1;\n"
      "LAB_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
      "@P1 bra DONE;\n"
      "bra LAB_WAIT;\n"
      "DONE:\n"
      "}\n" ::"r"(smem_u32(b)),
      "r"(parity)
      : "memory");
}

// The barrier's arrival fires when this thread's earlier cp.async copies have landed (counted
// in the barrier's expected arrivals: .noinc).
__device__ __forceinline__ void cp_async_arrive(uint64_t* b) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_u32(b)) : "memory");
}

// A gathered A tile by a 128-thread producer warpgroup (the grouped GEMMs' gather mode):
// thread `tid` copies 16-byte chunk tid % 8 of rows tid / 8 + 16 j (j < 8) of a 128-row tile of
// 128-byte rows to shared address `base`, in the 128-byte swizzle a TMA load writes. src(j) is
// row j's chunk, or null for a row of zeros (`any` is then passed as the unread source).
template <class Src>
__device__ __forceinline__ void cp_async_rows_sw128(uint32_t base, int tid, const void* any, Src src) {
  const int q = tid & 7;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int r = (tid >> 3) + 16 * j;
    const void* g = src(j);
    cp_async16(base + r * 128 + ((q ^ (r & 7)) << 4), g ? g : any, g != nullptr);
  }
}

__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}

// A K-major tile of 128-byte rows in 8-row, 1024-byte swizzle atoms (as TMA's 128-byte swizzle
// writes it): start address, stride between atoms 1024 bytes, swizzle mode 128B. The k steps
// of 32 bytes inside the atom advance the start address (the swizzle applies to the address).
__device__ __forceinline__ uint64_t sw128_desc(const void* smem) {
  const uint32_t a = smem_u32(smem);
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) |
         (uint64_t{1} << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
// Keeps the compiler from moving reads or writes of an accumulator across the asynchronous MMA.
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }
// Every thread of the warpgroup executes these together: the registers per thread from here on.
template <int N>
__device__ __forceinline__ void registers_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void registers_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N));
}

// The accumulator operands of a wgmma's inline asm, eight f32 registers of an array d at a time.
#define MOEREG_WGMMA_ACC8(i)                                                                               \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])

template <int N>  // returns once at most N committed wgmma groups are still running
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// The tiles of a grouped GEMM: each expert's sorted rows [offsets[e], offsets[e + 1]) cut into
// m tiles of bm rows, times nb column blocks. prefix[e] (in shared memory) counts the m tiles
// before expert e; warp 0 fills prefix[0, experts] (the caller syncs the block afterwards).
__device__ __forceinline__ void count_m_tiles(const int* offsets, int experts, int bm, int* prefix, int lane) {
  int carry = 0;
  for (int e0 = 0; e0 < experts; e0 += 32) {
    const int e = e0 + lane;
    int c = e < experts ? (offsets[e + 1] - offsets[e] + bm - 1) / bm : 0;
    for (int d = 1; d < 32; d <<= 1) {
      const int v = __shfl_up_sync(~0u, c, d);
      if (lane >= d) c += v;
    }
    if (e < experts) prefix[e + 1] = carry + c;
    carry += __shfl_sync(~0u, c, 31);
  }
  if (lane == 0) prefix[0] = 0;
}

// Which tile blockIdx-stride step t is: expert e's m tiles x n blocks, n block outer (the
// CTAs running at once share a weight tile; the expert's rows stay in L2).
struct tile_at {
  int e, row0, row_end, n0;
};
__device__ __forceinline__ tile_at find_tile(const int* prefix, const int* offsets, int experts, int nb, int bm, int bn,
                                             int t) {
  int lo = 0, hi = experts - 1;  // the last e with prefix[e] * nb <= t
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (prefix[mid] * nb <= t) lo = mid;
    else hi = mid - 1;
  }
  const int local = t - prefix[lo] * nb, mt = prefix[lo + 1] - prefix[lo];
  return {lo, offsets[lo] + (local % mt) * bm, offsets[lo + 1], (local / mt) * bn};
}

// A row-major matrix [rows, cols] of elem_bytes-wide elements as TMA reads it into 128-byte
// swizzled tiles: boxes of box_rows rows x 128 bytes. Throws naming `what` when the driver
// refuses it (the base must be 16-byte aligned, the rows a multiple of 16 bytes).
CUtensorMap make_sw128_map(const void* base, CUtensorMapDataType type, int elem_bytes, uint64_t rows, uint64_t cols,
                           uint32_t box_rows, const char* what);

}  // namespace moereg::cuda
