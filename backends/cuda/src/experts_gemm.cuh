// SPDX-License-Identifier: Apache-2.0
// experts_gemm.cuh - the grouped expert GEMM kernel (mma.sync, fp32 accumulate) and its device
// helpers: bf16 or F8_E4M3 weights, gate/up with the fused SiLU epilogue or down with the
// weighted, un-permuting atomics. Private to moe_kernels.cu, which instantiates it for each
// tile shape and launches it; included by that file only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "moe_kernels.cuh"
#include "ptx.cuh"

namespace moereg::cuda::gemm {

// Programmatic dependent launch (sm_90): wait for the grids this one depends on to finish
// and their memory to be visible; let the next grid on the stream launch. Both are no-ops in a
// grid launched without the attribute.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Two e4m3 bytes (low byte first) as an f16x2 register: exact (every e4m3 value is an f16
// value), one instruction.
__device__ __forceinline__ uint32_t fp8x2_f16x2(uint32_t two) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two), __NV_E4M3);
  return static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
}
// The power of two that brings a row whose largest magnitude is `amax` into [2^14, 2^15):
// bf16 values times it are f16 values (f16 holds every bf16 significand; the exponent
// range is what the scale takes care of), and 2^15 x 448 x 128 stays far inside f32.
__device__ __forceinline__ float f16_row_scale(float amax) {
  if (!(amax > 0.f) || !isfinite(amax)) return 1.f;
  int e;
  frexpf(amax, &e);  // amax < 2^e
  return ldexpf(1.f, max(-100, min(100, 15 - e)));
}
// Byte offset of 16-byte chunk c of row r in a [rows][BK] bf16 tile. The XOR keeps the 8
// rows an ldmatrix reads in distinct bank groups (64-byte rows: pairs of rows share a line).
template <int BK>
__device__ __forceinline__ uint32_t tile_off(int r, int c) {
  if constexpr (BK >= 64) return static_cast<uint32_t>(r * BK * 2 + ((c ^ (r & 7)) << 4));
  else return static_cast<uint32_t>(r * 64 + ((c ^ ((r >> 1) & 3)) << 4));
}
// Byte offset of 16-byte chunk c of row r in a [rows][BK] tile of e4m3 bytes. Each mma step
// reads one chunk of 8 consecutive rows (four 4-byte words a row); the XOR puts those 8
// chunks in the 8 distinct 16-byte bank groups whatever BK (32, 64 or 128 bytes a row).
template <int BK>
__device__ __forceinline__ uint32_t f8_off(int r, int c) {
  constexpr int chunks = BK / 16, shift = chunks == 8 ? 0 : chunks == 4 ? 1 : 2;
  return static_cast<uint32_t>(r * BK + ((c ^ ((r >> shift) & (chunks - 1))) << 4));
}

// Two e4m3 bytes (low byte first) times their scale, rounded once to bf16: the value the
// dequantized checkpoint holds (moereg/quant/fp8_e4m3.h), as a bf16x2 register.
__device__ __forceinline__ uint32_t fp8x2_scaled_bf16x2(uint32_t two, float s) {
  const __half2 h(__nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two), __NV_E4M3));
  const float2 f = __half22float2(h);
  const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * s, f.y * s);
  return *reinterpret_cast<const uint32_t*>(&b);
}

// F8: the weight tile of each stage arrives as e4m3 bytes ([BN][BK], BK bytes a row, half
// the bf16 bytes, which is what decode streams) and stays e4m3 in shared memory: each thread
// reads the 4 bytes of its mma B fragment with one 32-bit load and dequantizes them in
// registers (bf16(q x s), the value `convert --dtype bf16` writes). That needs the 4 bytes
// adjacent, which they are because the upload put every 16-byte group of a row in fragment
// order (host::stage_f8_fragments): bytes {2t, 2t+1, 8+2t, 9+2t} at 4t.
//
// WK > 1 splits each k tile's mma steps over WK groups of warps (the F8 decode tile: its
// per-fragment dequantization is instruction-bound with 4 warps, so 8 share the work) and adds
// their accumulators through shared memory before the epilogue.
//
// F16A (F8 only, a k tile inside one scale block): the exact products instead. Each stage's
// activation tile is turned in place into f16 times a per-row power of two (f16_row_scale of
// the row's largest magnitude: p.x_amax per token, p.h_amax per sorted row, which the gate/up
// epilogue fills), each weight fragment is 2 cvt instructions (e4m3 -> f16, exact), the mma
// sums a k tile unscaled, and the tile's block scale multiplies that partial sum into the
// float accumulators; the row's power of two is divided out in the epilogue. The products are
// q x s x x, not bf16(q x s) x x: closer to the exact layer than the dequantized bf16 one, and
// 2 conversions per fragment where fp8x2_scaled_bf16x2 takes 10 operations.
//
// Launched as a dependent grid (p.pdl), gate/up waits for the prepare kernel before it reads
// the tile list and then lets the down GEMM launch; the down GEMM, whose weight rows do not
// depend on gate/up, issues its first STAGES - 1 weight tiles before it waits for h, so at
// decode its weight stream starts while the last gate/up CTAs finish.

template <int BM, int BN, int BK, int WM, int WN, int STAGES, bool GATE_UP, bool F8, int WK = 1, bool F16A = false>
__global__ void __launch_bounds__(WM* WN* WK * 32) experts_gemm_kernel(gemm_problem p) {
  static_assert(!F16A || F8, "the f16 path reads e4m3 weights");
  constexpr int CPR = BK / 8;  // 16-byte chunks per tile row
  constexpr int THREADS = WM * WN * WK * 32;
  static_assert((BK / 16) % WK == 0, "the k split must divide the mma steps of a k tile");
  constexpr int TM = BM / WM;
  constexpr int MI = TM / 16;
  constexpr int NI = 4;  // warp tile is 32 columns
  static_assert(BN / WN == 32, "warp tile must be 32 columns");
  constexpr int A_BYTES = BM * BK * 2;
  constexpr int B_BYTES = BN * BK * (F8 ? 1 : 2);
  constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  constexpr int A_CHUNKS = BM * CPR;
  constexpr int B_CPR = F8 ? BK / 16 : CPR;  // 16-byte chunks per weight row of a stage
  constexpr int B_CHUNKS = BN * B_CPR;
  constexpr int A_PER = (A_CHUNKS + THREADS - 1) / THREADS;
  constexpr int B_PER = B_CHUNKS / THREADS;
  static_assert(B_CHUNKS % THREADS == 0, "weight chunks must split evenly over the threads");

  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ float a_scale[F16A ? BM : 1];  // F16A: each tile row's power of two
  // F16A: each stage's block scale of every weight row of the tile, copied with the stage's
  // weights (one 4-byte cp.async by each of the first BN threads), so the k loop reads its
  // eight from shared memory instead of computing eight global addresses and loading them.
  __shared__ __align__(16) float stage_scale[F16A ? STAGES : 1][F16A ? BN : 1];

  if constexpr (GATE_UP) {
    pdl_wait();
    pdl_launch_dependents();
    if (p.zero_out) {  // slot tiles: no prepare kernel zeroed the output the down GEMM adds into
      const int64_t n4 = p.zero_count / 4, stride = static_cast<int64_t>(gridDim.x) * gridDim.y * blockDim.x;
      for (int64_t i = (static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride)
        reinterpret_cast<float4*>(p.zero_out)[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
  int g, seg, row0, rows;
  if (p.slot_ids) {
    // Slot tiles: tile y is token slot y, its expert read from the top-k ids (T = 1: the k
    // experts are distinct), its row of h row y; no permutation was made.
    const int64_t e = p.slot_ids_i64 ? static_cast<const int64_t*>(p.slot_ids)[blockIdx.y]
                                     : static_cast<const int32_t*>(p.slot_ids)[blockIdx.y];
    if (e < 0 || e >= p.num_experts) return;  // dropped, as the permutation drops it
    g = static_cast<int>(e);
    seg = blockIdx.y;
    row0 = 0;
    rows = 1;
  } else if (p.dense_rows > 0) {
    g = 0;
    seg = 0;
    row0 = blockIdx.y * BM;
    if (row0 >= p.dense_rows) return;
    rows = min(BM, p.dense_rows - row0);
  } else {
    if (static_cast<int>(blockIdx.y) >= *p.num_tiles) return;
    g = p.tile_expert[blockIdx.y];
    row0 = p.tile_row0[blockIdx.y];
    seg = p.offsets[g];
    rows = min(BM, p.offsets[g + 1] - seg - row0);
  }
  const int K = GATE_UP ? p.hidden : p.inter;
  const int KT = (K + BK - 1) / BK;
  const int tid = threadIdx.x;

  // Per-thread source rows, resolved once.
  const __nv_bfloat16* a_src[A_PER];
  bool a_ok[A_PER];
#pragma unroll
  for (int i = 0; i < A_PER; ++i) {
    int chunk = tid + i * THREADS;
    int r = chunk / CPR;
    a_ok[i] = chunk < A_CHUNKS && r < rows;
    a_src[i] = GATE_UP ? p.x : p.h;
    if (a_ok[i]) {
      int pos = seg + row0 + r;
      if (GATE_UP) {
        int tok = p.dense_rows > 0 ? pos : p.slot_ids ? pos / p.top_k : p.sorted_token[pos];
        a_src[i] = p.x + static_cast<size_t>(tok) * p.hidden;
      } else {
        a_src[i] = p.h + static_cast<size_t>(pos) * p.inter;
      }
    }
  }
  // Weight rows: element offsets into the expert's matrix (bytes for F8, elements for bf16
  // alike), and for F8 the row of block scales each one uses.
  const unsigned char* b_src[B_PER];
  bool b_ok[B_PER];
#pragma unroll
  for (int i = 0; i < B_PER; ++i) {
    int n = (tid + i * THREADS) / B_CPR;
    size_t row;
    if (GATE_UP) {
      int col = blockIdx.x * (BN / 2) + (n >> 5) * 16 + (n & 15);
      b_ok[i] = col < p.inter;
      if (!b_ok[i]) col = 0;
      row = static_cast<size_t>(g) * 2 * p.inter + ((n & 16) ? p.inter + col : col);
    } else {
      int nrow = blockIdx.x * BN + n;
      b_ok[i] = nrow < p.hidden;
      if (!b_ok[i]) nrow = 0;
      row = static_cast<size_t>(g) * p.hidden + nrow;
    }
    const size_t rowlen = GATE_UP ? p.hidden : p.inter;
    if constexpr (F8) b_src[i] = (GATE_UP ? p.w13_f8 : p.w2_f8) + row * rowlen;
    else b_src[i] = reinterpret_cast<const unsigned char*>((GATE_UP ? p.w13 : p.w2) + row * rowlen);
  }

  // F16A: the scale row of weight row n = tid (tid < BN) that this thread copies into
  // stage_scale, and which scale column k tile kt of it reads: kt / tiles_per_col, kept as a
  // count (the tiles are loaded in order) rather than a division per tile.
  const float* stage_scale_src = nullptr;
  int scale_col = 0, scale_tiles_left = 0, tiles_per_col = 1;
  const uint32_t sbase = smem_u32(smem);
  auto load_a = [&](int slot, int kt) {
    const uint32_t sa = sbase + slot * STAGE_BYTES;
    const int k0 = kt * BK;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
      int chunk = tid + i * THREADS;
      if (chunk < A_CHUNKS) {
        int r = chunk / CPR, c = chunk % CPR;
        int k = k0 + c * 8;
        bool ok = a_ok[i] && k < K;
        cp_async16(sa + tile_off<BK>(r, c), ok ? a_src[i] + k : a_src[i], ok);
      }
    }
  };
  auto load_b = [&](int slot, int kt) {
    const uint32_t sb = sbase + slot * STAGE_BYTES + A_BYTES;
    const int k0 = kt * BK;
    if constexpr (F16A) {
      if (stage_scale_src) cp_async4(smem_u32(&stage_scale[slot][tid]), stage_scale_src + scale_col, true);
      if (--scale_tiles_left == 0) {
        ++scale_col;
        scale_tiles_left = tiles_per_col;
      }
    }
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
      int chunk = tid + i * THREADS;
      int r = chunk / B_CPR, c = chunk % B_CPR;
      if constexpr (F8) {
        int k = k0 + c * 16;
        bool ok = b_ok[i] && k < K;
        cp_async16(sb + f8_off<BK>(r, c), ok ? b_src[i] + k : b_src[i], ok);
      } else {
        int k = k0 + c * 8;
        bool ok = b_ok[i] && k < K;
        cp_async16(sb + tile_off<BK>(r, c), ok ? b_src[i] + 2 * k : b_src[i], ok);
      }
    }
  };
  const int lane = tid & 31, wk = (tid >> 5) / (WM * WN), warp = (tid >> 5) % (WM * WN);
  const int wm = warp / WN, wn = warp % WN;
  // F8 (per-weight dequantization): the block-scale row of each of this thread's B fragment
  // rows (n = wn*32 + ni*8 + lane/4; gate and up rows each on their own grid of ceil(I / b0)
  // scale rows). A row past the matrix (zero-filled bytes) reads a valid scale and stays zero.
  const float* f8_scale_row[F16A ? 1 : NI];
  bool f8_tile_scale = false;  // one scale for all of a k tile (b1 a multiple of BK, or the whole row)
  if constexpr (F8) {
    auto scale_row_of = [&](int n) {
      int srow;
      if (GATE_UP) {
        int col = blockIdx.x * (BN / 2) + (n >> 5) * 16 + (n & 15);
        if (col >= p.inter) col = 0;
        const int gate_srows = (p.inter + p.scale_b0 - 1) / p.scale_b0;
        srow = g * 2 * gate_srows + ((n & 16) ? gate_srows : 0) + col / p.scale_b0;
      } else {
        int nrow = blockIdx.x * BN + n;
        if (nrow >= p.hidden) nrow = 0;
        srow = g * ((p.hidden + p.scale_b0 - 1) / p.scale_b0) + nrow / p.scale_b0;
      }
      const int scols = (K + p.scale_b1 - 1) / p.scale_b1;
      return (GATE_UP ? p.w13_scale : p.w2_scale) + static_cast<size_t>(srow) * scols;
    };
    if constexpr (F16A) {
      // A k tile lies inside one scale block (f8_exact_products): b1 a multiple of BK, or one
      // column for all of K.
      if (tid < BN) stage_scale_src = scale_row_of(tid);
      tiles_per_col = p.scale_b1 >= K ? KT : p.scale_b1 / BK;
      scale_tiles_left = tiles_per_col;
    } else {
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) f8_scale_row[ni] = scale_row_of(wn * 32 + ni * 8 + (lane >> 2));
      f8_tile_scale = p.scale_b1 % BK == 0 || p.scale_b1 >= K;
    }
  }
  float acc[MI][NI][4] = {};

  if constexpr (!GATE_UP) {
    // Weights first (they do not depend on gate/up), then wait for h.
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s)
      if (s < KT) load_b(s, s);
    pdl_wait();
  }
  if constexpr (F16A) {
    for (int r = tid; r < BM; r += THREADS) {
      float amax = 0.f;
      if (r < rows) {
        const int pos = seg + row0 + r;
        amax = GATE_UP ? p.x_amax[p.dense_rows > 0 ? pos : p.sorted_token[pos]] : __uint_as_float(p.h_amax[pos]);
      }
      a_scale[r] = f16_row_scale(amax);
    }
    // Read after the first stage barrier below.
  }
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) {
      load_a(s, s);
      if constexpr (GATE_UP) load_b(s, s);
    }
    cp_commit();
  }
  // The stage of k tile kt and the one its load goes to (kt + STAGES - 1), as counters: a
  // modulo by a STAGES that is not a power of two costs a multiply-high per tile.
  int slot = 0, load_slot = STAGES - 1;
  for (int kt = 0; kt < KT; ++kt) {
    cp_wait<STAGES - 2>();
    __syncthreads();
    {
      int nk = kt + STAGES - 1;
      if (nk < KT) {
        load_a(load_slot, nk);
        load_b(load_slot, nk);
      }
      cp_commit();
    }
    const int cur = slot;
    slot = slot + 1 == STAGES ? 0 : slot + 1;
    load_slot = load_slot + 1 == STAGES ? 0 : load_slot + 1;
    const uint32_t sa = sbase + cur * STAGE_BYTES;
    const uint32_t sb = sa + A_BYTES;
    if constexpr (F16A) {
      // bf16 -> f16 x the row's power of two, in place (exact for every value in f16's
      // normal range). Rows past `rows` were zero-filled, and bf16 +0 is f16 +0: they are
      // skipped (at decode all but one row of the tile).
#pragma unroll
      for (int chunk = tid; chunk < A_CHUNKS; chunk += THREADS) {
        if (chunk / CPR >= rows) continue;
        uint4* q = reinterpret_cast<uint4*>(smem + (sa - sbase) + chunk * 16);
        const float sc = a_scale[chunk / CPR];
        uint4 v = *q;
        uint32_t* w = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float lo = __uint_as_float(w[j] << 16) * sc, hi = __uint_as_float(w[j] & 0xffff0000u) * sc;
          const __half2 h = __floats2half2_rn(lo, hi);
          w[j] = *reinterpret_cast<const uint32_t*>(&h);
        }
        *q = v;
      }
      __syncthreads();
    }
    float tile_scale[NI];
    float acc_scale[F16A ? NI : 1][2];
    if constexpr (F16A) {
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) {
        // The scales of the two output columns each accumulator pair holds (n = wn*32 + ni*8
        // + 2*(lane%4) + j): an mma's C fragment is not laid out like its B fragment.
        const float2 sc = *reinterpret_cast<const float2*>(&stage_scale[cur][wn * 32 + ni * 8 + 2 * (lane & 3)]);
        acc_scale[ni][0] = sc.x;
        acc_scale[ni][1] = sc.y;
      }
    } else if constexpr (F8) {
      if (f8_tile_scale) {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) tile_scale[ni] = __ldg(f8_scale_row[ni] + kt * BK / p.scale_b1);
      }
    }
    float part[F16A ? MI : 1][F16A ? NI : 1][4] = {};  // F16A: this k tile's unscaled sums
#pragma unroll
    for (int kk = wk * (BK / 16 / WK); kk < (wk + 1) * (BK / 16 / WK); ++kk) {
      uint32_t af[MI][4];
      uint32_t bf[NI][2];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
        int r = wm * TM + mi * 16 + (lane & 15);
        int c = kk * 2 + (lane >> 4);
        ldmatrix_x4(sa + tile_off<BK>(r, c), af[mi][0], af[mi][1], af[mi][2], af[mi][3]);
      }
      if constexpr (F16A) {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
          const int r = wn * 32 + ni * 8 + (lane >> 2);
          const uint32_t q = *reinterpret_cast<const uint32_t*>(smem + (sb - sbase) + f8_off<BK>(r, kk) + 4 * (lane & 3));
          bf[ni][0] = fp8x2_f16x2(q);
          bf[ni][1] = fp8x2_f16x2(q >> 16);
        }
      } else if constexpr (F8) {
        const int k = kt * BK + kk * 16;
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
          const int r = wn * 32 + ni * 8 + (lane >> 2);
          const uint32_t q = *reinterpret_cast<const uint32_t*>(smem + (sb - sbase) + f8_off<BK>(r, kk) + 4 * (lane & 3));
          float s0, s1;
          if (f8_tile_scale) {
            s0 = s1 = tile_scale[ni];
          } else {  // b1 a multiple of 8: each half of the 16 k has one scale
            s0 = k < K ? __ldg(f8_scale_row[ni] + k / p.scale_b1) : 0.f;
            s1 = k + 8 < K ? __ldg(f8_scale_row[ni] + (k + 8) / p.scale_b1) : 0.f;
          }
          bf[ni][0] = fp8x2_scaled_bf16x2(q, s0);
          bf[ni][1] = fp8x2_scaled_bf16x2(q >> 16, s1);
        }
      } else {
#pragma unroll
        for (int nj = 0; nj < NI / 2; ++nj) {
          int r = wn * 32 + nj * 16 + ((lane >> 4) << 3) + (lane & 7);
          int c = kk * 2 + ((lane >> 3) & 1);
          ldmatrix_x4(sb + tile_off<BK>(r, c), bf[2 * nj][0], bf[2 * nj][1], bf[2 * nj + 1][0], bf[2 * nj + 1][1]);
        }
      }
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
          if constexpr (F16A) mma_m16n8k16<true>(part[mi][ni], af[mi], bf[ni]);
          else mma_m16n8k16<false>(acc[mi][ni], af[mi], bf[ni]);
        }
    }
    if constexpr (F16A) {
#pragma unroll
      for (int ni = 0; ni < NI; ++ni)
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[mi][ni][j] = fmaf(part[mi][ni][j], acc_scale[ni][j & 1], acc[mi][ni][j]);
    }
  }
  cp_wait<0>();
  if constexpr (WK > 1) {
    // The other k groups' partial sums, through the (now idle) stage memory, into group 0's.
    constexpr int N_ACC = MI * NI * 4;
    static_assert((WK - 1) * WM * WN * 32 * N_ACC * 4 <= STAGES * STAGE_BYTES, "reduction does not fit");
    float* red = reinterpret_cast<float*>(smem);
    __syncthreads();
    if (wk > 0) {
      float* mine = red + ((wk - 1) * WM * WN * 32 + warp * 32 + lane) * N_ACC;
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
          for (int j = 0; j < 4; ++j) mine[(mi * NI + ni) * 4 + j] = acc[mi][ni][j];
    }
    __syncthreads();
    if (wk > 0) return;
#pragma unroll
    for (int other = 0; other < WK - 1; ++other) {
      const float* theirs = red + (other * WM * WN * 32 + warp * 32 + lane) * N_ACC;
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[mi][ni][j] += theirs[(mi * NI + ni) * 4 + j];
    }
  }

  if constexpr (F16A) {
    // Divide each row's power of two back out (exact).
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const float un = 1.f / a_scale[wm * TM + mi * 16 + (lane >> 2) + half * 8];
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
          acc[mi][ni][half * 2] *= un;
          acc[mi][ni][half * 2 + 1] *= un;
        }
      }
  }
  if (GATE_UP) {
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        int r = wm * TM + mi * 16 + (lane >> 2) + half * 8;
        float amax = 0.f;  // F16A: of the h values written (as rounded), for the down GEMM's row scale
        if (r < rows) {
          size_t hrow = static_cast<size_t>(seg + row0 + r) * p.inter;
#pragma unroll
          for (int ni = 0; ni < 2; ++ni) {
            int col = blockIdx.x * (BN / 2) + wn * 16 + ni * 8 + (lane & 3) * 2;
            if (col >= p.inter) continue;
            float g0 = acc[mi][ni][half * 2], g1 = acc[mi][ni][half * 2 + 1];
            float u0 = acc[mi][ni + 2][half * 2], u1 = acc[mi][ni + 2][half * 2 + 1];
            float h0 = g0 / (1.f + __expf(-g0)) * u0;
            float h1 = g1 / (1.f + __expf(-g1)) * u1;
            const __nv_bfloat162 hb = __floats2bfloat162_rn(h0, h1);
            *reinterpret_cast<__nv_bfloat162*>(p.h + hrow + col) = hb;
            if constexpr (F16A) amax = fmaxf(amax, fmaxf(fabsf(__low2float(hb)), fabsf(__high2float(hb))));
          }
        }
        if constexpr (F16A) {
          // The four lanes of a row agree first; then one atomic per warp and row (|h| as
          // float bits orders like the unsigned integers).
          amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
          amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
          if (r < rows && (lane & 3) == 0 && amax > 0.f) atomicMax(p.h_amax + seg + row0 + r, __float_as_uint(amax));
        }
      }
  } else {
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        int r = wm * TM + mi * 16 + (lane >> 2) + half * 8;
        if (r >= rows) continue;
        int pos = seg + row0 + r;
        int tok = p.dense_rows > 0 ? pos : p.slot_ids ? pos / p.top_k : p.sorted_token[pos];
        float w = p.sorted_weight ? p.sorted_weight[pos] : 1.f;
        float* orow = p.out + static_cast<size_t>(tok) * p.hidden;
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
          int col = blockIdx.x * BN + wn * 32 + ni * 8 + (lane & 3) * 2;
          if (col >= p.hidden) continue;
          atomicAdd(reinterpret_cast<float2*>(orow + col),
                    make_float2(w * acc[mi][ni][half * 2], w * acc[mi][ni][half * 2 + 1]));
        }
      }
  }
}

}  // namespace moereg::cuda::gemm
