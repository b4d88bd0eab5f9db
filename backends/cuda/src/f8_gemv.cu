// SPDX-License-Identifier: Apache-2.0
// f8_gemv.cu - the T = 1 matrix-vector kernels of F8_E4M3 experts (f8_gemv.cuh).
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "f8_gemv.cuh"
#include "moe_kernels.cuh"

namespace moereg::cuda {

namespace {

constexpr int warps = 8, threads = warps * 32;
constexpr int rows_gate_up = 2;  // gate/up row pairs a warp sums at once: 4 weight rows in flight
constexpr int rows_down = 4;     // down rows a warp sums at once

// One slot's expert: its weights, scales, width and routing weight.
struct slot_view {
  const uint8_t* w13;
  const uint8_t* w2;
  const float* s13;
  const float* s2;
  int inter;
  float weight;
};

__device__ __forceinline__ long long cdiv_d(long long a, long long b) { return (a + b - 1) / b; }

__device__ __forceinline__ bool slot_of(const f8_gemv_problem& p, int slot, slot_view& v) {
  const long long H = p.hidden;
  if (slot < p.top_k) {
    const long long e = p.ids_i64 ? static_cast<const int64_t*>(p.ids)[slot] : static_cast<const int32_t*>(p.ids)[slot];
    if (e < 0 || e >= p.num_experts) return false;  // dropped, as the permutation drops it
    const long long I = p.inter;
    v.w13 = p.w13 + e * 2 * I * H;
    v.w2 = p.w2 + e * H * I;
    v.s13 = p.s13 + e * 2 * cdiv_d(I, p.b0) * cdiv_d(H, p.b1);
    v.s2 = p.s2 + e * cdiv_d(H, p.b0) * cdiv_d(I, p.b1);
    v.inter = p.inter;
    v.weight = p.weights[slot];
    return true;
  }
  if (!p.sw13) return false;
  v.w13 = p.sw13;
  v.w2 = p.sw2;
  v.s13 = p.ss13;
  v.s2 = p.ss2;
  v.inter = p.shared_inter;
  v.weight = p.shared_gate ? *p.shared_gate : 1.f;
  return true;
}

// 16 bytes of weights read once: past L1 (no reuse) through the read-only path.
__device__ __forceinline__ uint4 load_stream(const uint8_t* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float2 e4m3x2_float2(uint32_t two) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two & 0xffffu), __NV_E4M3);
  return __half22float2(__half2(h));
}

// One chunk: 16 e4m3 values in fragment order (bytes 4t, 4t+1 hold k = 2t, 2t+1; bytes
// 4t+2, 4t+3 hold k = 8+2t, 9+2t) dotted with the chunk's x, x0..x3 its k = 0..15 by fours.
__device__ __forceinline__ float dot16(const uint4& q, const float4& x0, const float4& x1, const float4& x2,
                                       const float4& x3) {
  const float xs[16] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w, x2.x, x2.y, x2.z, x2.w, x3.x, x3.y, x3.z, x3.w};
  const uint32_t w[4] = {q.x, q.y, q.z, q.w};
  float acc = 0.f;
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    const float2 lo = e4m3x2_float2(w[t]), hi = e4m3x2_float2(w[t] >> 16);
    acc = fmaf(lo.x, xs[2 * t], acc);
    acc = fmaf(lo.y, xs[2 * t + 1], acc);
    acc = fmaf(hi.x, xs[8 + 2 * t], acc);
    acc = fmaf(hi.y, xs[9 + 2 * t], acc);
  }
  return acc;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// A vector of `n` floats (n a multiple of 16) into shared memory as [4][n / 16] float4s:
// chunk c's k = 4q .. 4q+3 at v4[q * chunks + c], so that the 32 lanes of a warp, reading 32
// consecutive chunks, read 32 consecutive float4s (no bank conflicts).
template <class Load>
__device__ __forceinline__ void stage_vector(float4* v4, int n, Load&& value) {
  const int chunks = n / 16;
  for (int i = threadIdx.x; i < chunks * 4; i += threads) {
    const int c = i >> 2, q = i & 3;
    v4[q * chunks + c] = make_float4(value(c * 16 + 4 * q), value(c * 16 + 4 * q + 1), value(c * 16 + 4 * q + 2),
                                     value(c * 16 + 4 * q + 3));
  }
  __syncthreads();
}

// Sums ROWS weight rows (each `len` bytes from rows[j]) against the staged vector v4, each
// 16-byte chunk's sum times its block scale scales[j][chunk * 16 / b1], into acc[j].
template <int ROWS>
__device__ __forceinline__ void rows_dot(const uint8_t* const (&rows)[ROWS], const float* const (&scales)[ROWS], int len,
                                         int b1, const float4* v4, float (&acc)[ROWS]) {
  const int chunks = len / 16, lane = threadIdx.x & 31;
  for (int c = lane; c < chunks; c += 64) {
    const bool two = c + 32 < chunks;
    uint4 q0[ROWS], q1[ROWS];
#pragma unroll
    for (int j = 0; j < ROWS; ++j) {  // every load of both chunks in flight before any math
      q0[j] = load_stream(rows[j] + c * 16);
      if (two) q1[j] = load_stream(rows[j] + (c + 32) * 16);
    }
    {
      const float4 x0 = v4[c], x1 = v4[chunks + c], x2 = v4[2 * chunks + c], x3 = v4[3 * chunks + c];
      const int sc = c * 16 / b1;
#pragma unroll
      for (int j = 0; j < ROWS; ++j) acc[j] = fmaf(dot16(q0[j], x0, x1, x2, x3), __ldg(scales[j] + sc), acc[j]);
    }
    if (two) {
      const int c1 = c + 32;
      const float4 x0 = v4[c1], x1 = v4[chunks + c1], x2 = v4[2 * chunks + c1], x3 = v4[3 * chunks + c1];
      const int sc = c1 * 16 / b1;
#pragma unroll
      for (int j = 0; j < ROWS; ++j) acc[j] = fmaf(dot16(q1[j], x0, x1, x2, x3), __ldg(scales[j] + sc), acc[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < ROWS; ++j) acc[j] = warp_sum(acc[j]);
}

// Grid (row blocks of warps x rows_gate_up rows, slots). h[slot][r] = SiLU(gate_r . x) * (up_r . x).
__global__ void __launch_bounds__(threads) f8_gemv_gate_up(const f8_gemv_problem p, int h_stride) {
  extern __shared__ float4 x4[];
  slot_view v;
  if (!slot_of(p, blockIdx.y, v)) return;
  const int I = v.inter, H = p.hidden;
  const int r0 = (blockIdx.x * warps + threadIdx.x / 32) * rows_gate_up;
  if (static_cast<int>(blockIdx.x) * warps * rows_gate_up >= I) return;
  // The first chunks of this warp's rows start on their way to L2 while x is staged.
  if (r0 < I)
    for (int j = 0; j < 2 * rows_gate_up; ++j) {
      const int r = min(r0 + j % rows_gate_up, I - 1) + (j >= rows_gate_up ? I : 0);
      const uint8_t* row = v.w13 + static_cast<long long>(r) * H;
      for (int c = threadIdx.x & 31; c < 64 && c < H / 16; c += 32)
        asm volatile("prefetch.global.L2 [%0];\n" ::"l"(row + c * 16));
    }
  stage_vector(x4, H, [&](int k) { return __bfloat162float(p.x[k]); });
  if (r0 >= I) return;
  const long long hb = cdiv_d(H, p.b1), gate_grid = cdiv_d(I, p.b0);
  const uint8_t* rows[2 * rows_gate_up];
  const float* scales[2 * rows_gate_up];
#pragma unroll
  for (int j = 0; j < rows_gate_up; ++j) {
    const int r = min(r0 + j, I - 1);  // a row past the end repeats the last (not stored)
    rows[j] = v.w13 + static_cast<long long>(r) * H;
    rows[rows_gate_up + j] = v.w13 + static_cast<long long>(I + r) * H;
    scales[j] = v.s13 + (r / p.b0) * hb;
    scales[rows_gate_up + j] = v.s13 + (gate_grid + r / p.b0) * hb;
  }
  float acc[2 * rows_gate_up] = {};
  rows_dot<2 * rows_gate_up>(rows, scales, H, p.b1, x4, acc);
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int j = 0; j < rows_gate_up; ++j)
      if (r0 + j < I) {
        const float g = acc[j], u = acc[rows_gate_up + j];
        p.h[static_cast<long long>(blockIdx.y) * h_stride + r0 + j] = g / (1.f + __expf(-g)) * u;
      }
}

// Grid (row blocks of warps x rows_down rows, slots). out[n] += w * (W_down[n] . h[slot]).
__global__ void __launch_bounds__(threads) f8_gemv_down(const f8_gemv_problem p, int h_stride) {
  extern __shared__ float4 h4[];
  slot_view v;
  if (!slot_of(p, blockIdx.y, v)) return;
  const int I = v.inter, H = p.hidden;
  const int n0 = (blockIdx.x * warps + threadIdx.x / 32) * rows_down;
  if (static_cast<int>(blockIdx.x) * warps * rows_down >= H) return;
  const float* h = p.h + static_cast<long long>(blockIdx.y) * h_stride;
  stage_vector(h4, I, [&](int k) { return h[k]; });
  if (n0 >= H) return;
  const long long ib = cdiv_d(I, p.b1);
  const uint8_t* rows[rows_down];
  const float* scales[rows_down];
#pragma unroll
  for (int j = 0; j < rows_down; ++j) {
    const int n = min(n0 + j, H - 1);
    rows[j] = v.w2 + static_cast<long long>(n) * I;
    scales[j] = v.s2 + (n / p.b0) * ib;
  }
  float acc[rows_down] = {};
  rows_dot<rows_down>(rows, scales, I, p.b1, h4, acc);
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int j = 0; j < rows_down; ++j)
      if (n0 + j < H) atomicAdd(p.out + n0 + j, v.weight * acc[j]);
}

// Past 48 KiB a kernel's dynamic shared memory must be allowed first; `allowed` remembers the
// most asked of this kernel so far, so a forward pays the call only when H or I grew (tile
// attributes are per process, as the GEMMs' are).
void allow_smem(const void* kernel, int bytes, std::atomic<int>& allowed, const char* what) {
  if (bytes <= 48 * 1024 || bytes <= allowed.load(std::memory_order_relaxed)) return;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": cudaFuncSetAttribute: " + cudaGetErrorString(e));
  allowed.store(bytes, std::memory_order_relaxed);
}

}  // namespace

bool f8_gemv_fits(int hidden, int inter, int shared_inter, int b1) {
  const int widest = std::max({hidden, inter, shared_inter});
  return hidden % 16 == 0 && inter % 16 == 0 && shared_inter % 16 == 0 && b1 % 16 == 0 && widest * 4 <= 200 * 1024;
}

void launch_f8_gemv(const f8_gemv_problem& p, cudaStream_t stream) {
  const int slots = p.top_k + (p.sw13 ? 1 : 0);
  const int widest = std::max(p.inter, p.shared_inter);
  const int gu_smem = p.hidden * 4, dn_smem = widest * 4;
  static std::atomic<int> gu_allowed{0}, dn_allowed{0};
  allow_smem(reinterpret_cast<const void*>(&f8_gemv_gate_up), gu_smem, gu_allowed, "f8_gemv_gate_up");
  allow_smem(reinterpret_cast<const void*>(&f8_gemv_down), dn_smem, dn_allowed, "f8_gemv_down");
  const dim3 gu((widest + warps * rows_gate_up - 1) / (warps * rows_gate_up), slots);
  f8_gemv_gate_up<<<gu, threads, gu_smem, stream>>>(p, widest);
  check_launch("f8_gemv_gate_up");
  const dim3 dn((p.hidden + warps * rows_down - 1) / (warps * rows_down), slots);
  f8_gemv_down<<<dn, threads, dn_smem, stream>>>(p, widest);
  check_launch("f8_gemv_down");
}

}  // namespace moereg::cuda
