// SPDX-License-Identifier: Apache-2.0
// ptx.cuh - the inline-PTX wrappers both GEMM kernels use (experts_gemm.cuh: mma.sync;
// fp8_grouped_gemm.cu: wgmma): shared-memory addresses, 16- and 4-byte asynchronous copies, and the
// m16n8k16 tensor-core step.
#pragma once

#include <cstdint>

namespace moereg::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes from global src to shared dst, or 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
// 4 bytes from global src to shared dst, or 4 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
// c += a b on one m16n8k16 tile, f32 accumulate; the operands bf16 (F16 false) or f16.
#define MOEREG_MMA_M16N8K16(T)                                                                        \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." T "." T                                       \
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                         \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                        \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
template <bool F16>
__device__ __forceinline__ void mma_m16n8k16(float* c, const uint32_t* a, const uint32_t* b) {
  if constexpr (F16) MOEREG_MMA_M16N8K16("f16");
  else MOEREG_MMA_M16N8K16("bf16");
}
#undef MOEREG_MMA_M16N8K16

}  // namespace moereg::cuda
