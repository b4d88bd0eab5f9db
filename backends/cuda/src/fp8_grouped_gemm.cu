// SPDX-License-Identifier: Apache-2.0
// fp8_grouped_gemm.cu - the grouped FP8 GEMM (see fp8_grouped_gemm.cuh).
//
// One CTA: a producer warp issues the TMA loads of 128 x 128 A and B tiles into a ring of
// shared-memory stages (with `gather`, the producer warpgroup's 128 threads fetch A's rows
// with cp.async, 16 bytes each, swizzled as TMA would have written them), and with each stage
// the scales its k block is promoted with (the tile's 128 row scales and the weight block's,
// 4-byte cp.async); two consumer warpgroups each multiply 64 of the tile's rows by its 128
// columns, a 128-column k block at a time (four wgmma m64n128k32), then fold that block's sum
// into their f32 result with the two scales read from the stage. The ring's stages are handed
// over by mbarriers: `full` (the TMA bytes and the copying threads' cp.async landed) and
// `empty` (both consumers' wgmmas have read the stage).
//
// 128 x 256 tiles (f8_grouped_problem::wide): B arrives as two 128-row boxes a stage and each
// consumer runs its k block twice, once per 128-column half, on the one accumulator, keeping
// 128 f32 sums; setmaxnreg gives the consumers the producer warpgroup's unused registers. With
// `hq` the two halves are a gate block and its up block, and the epilogue writes h quantized.
#include "fp8_grouped_gemm.cuh"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "f8_quantize.cuh"
#include "moe_kernels.cuh"
#include "hopper.cuh"

namespace moereg::cuda {

namespace {

constexpr int BM = 128, BK = 128;      // BK = f8_group: one scale per k block
constexpr int tile_bytes = BM * BK;    // A's tile, and B's per 128 output columns (one byte per e4m3)
constexpr int threads = 384;           // warpgroup 0: producer; 1 and 2: consumers
constexpr int max_experts = 4096;

// A tile of BN output columns (128 or 256). A 256-column tile reads each A tile from L2 once
// for twice the columns (a quarter fewer bytes per FLOP than 128 x 128); each consumer then
// runs its k block as two 128-column halves on one accumulator, promoting each half into its
// own f32 sums (64 + 128 registers: the same products in the same order as two 128-column
// tiles, so the results are bit-identical), which needs the registers setmaxnreg moves from
// the producer warpgroup to the consumers.
template <int BN>
struct tile_shape {
  static constexpr int halves = BN / 128;
  static constexpr int b_bytes = halves * tile_bytes;
  static constexpr int stages = halves == 1 ? 6 : 4;
  // Per stage beside the tiles: the scales its k block is promoted with (the tile's 128 row
  // scales, then the weight blocks' of each half), copied in by the producer with the tiles,
  // so the consumers read them from shared memory after the stage's barrier (from global
  // memory they waited on the loads every k block).
  static constexpr int scale_floats = BM + halves;
  static constexpr size_t smem_bytes = 1024 /* alignment */ + stages * (tile_bytes + b_bytes) +
                                       stages * scale_floats * sizeof(float) + 2 * stages * 8 +
                                       (max_experts + 1) * sizeof(int);
  static_assert(stages * scale_floats * sizeof(float) % 8 == 0, "the mbarriers after the scales need 8-byte alignment");
  static_assert(smem_bytes <= 227 * 1024, "more shared memory than an SM has");
};

// With 256-column tiles: 128 x 56 + 256 x 224 registers = 64 Ki, the launch's 384 x 168.
constexpr int producer_registers = 56, consumer_registers = 224;

// d (64 f32 per thread: the warpgroup's 64 x 128 block) = A(64 x 32) B(128 x 32)^T + (accumulate ? d : 0).
__device__ __forceinline__ void wgmma_m64n128k32(float (&d)[64], uint64_t a, uint64_t b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1;\n"
      "}\n"
      : MOEREG_WGMMA_ACC8(0), MOEREG_WGMMA_ACC8(8), MOEREG_WGMMA_ACC8(16), MOEREG_WGMMA_ACC8(24), MOEREG_WGMMA_ACC8(32), MOEREG_WGMMA_ACC8(40),
        MOEREG_WGMMA_ACC8(48), MOEREG_WGMMA_ACC8(56)
      : "l"(a), "l"(b), "r"(accumulate));
}

// One k block of a consumer warpgroup: its four k32 wgmmas on the stage's A rows (da) and B
// tile (db) into acc, started afresh, then the wait for them.
__device__ __forceinline__ void mma_k_block(float (&acc)[64], uint64_t da, uint64_t db) {
#pragma unroll
  for (int i = 0; i < 64; ++i) fence_operand(acc[i]);
  wgmma_fence();
#pragma unroll
  for (int k = 0; k < BK / 32; ++k) wgmma_m64n128k32(acc, da + 2 * k, db + 2 * k, k);
  wgmma_commit();
  wgmma_wait_all();
#pragma unroll
  for (int i = 0; i < 64; ++i) fence_operand(acc[i]);
}

// The fused gate/up tile's epilogue (f8_grouped_problem::hq): sum[0, 64) holds this thread's
// gate columns 8 j + 2 (l % 4) + {0, 1} of h block hb for rows r0 (registers 4 j + {0, 1}) and
// r1 (4 j + {2, 3}), sum[64, 128) the same up columns. h = SiLU(gate) * up with gate and up
// rounded to bf16 first, quantized per row and 128 columns: the row's columns are in the four
// lanes of a quad, so its largest magnitude is theirs. Every step is silu_quantize_rows's
// (fp8_grouped_experts.cu) with quantize_group's (f8_quantize.cuh), so the bytes are the same.
// Natural column 16 a + 8 b + 2 t + e goes to byte 16 a + 4 t + 2 b + e (fragment order):
// this thread's j = 2 a and 2 a + 1 make the 4 bytes at 16 a + 4 t. r0 or r1 < 0: not stored.
__device__ __forceinline__ void silu_quantize_epilogue(float (&sum)[128], const f8_grouped_problem& p, int hb, int r0,
                                                       int r1, int lane) {
  float m0 = 0.f, m1 = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    const float g = __bfloat162float(__float2bfloat16_rn(sum[i]));
    const float u = __bfloat162float(__float2bfloat16_rn(sum[64 + i]));
    const float h = g / (1.f + __expf(-g)) * u;
    sum[i] = h;
    if (i & 2) m1 = fmaxf(m1, fabsf(h));
    else m0 = fmaxf(m0, fabsf(h));
  }
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    m0 = fmaxf(m0, __shfl_xor_sync(~0u, m0, o));
    m1 = fmaxf(m1, __shfl_xor_sync(~0u, m1, o));
  }
  const int inter = p.n / 2, t = lane & 3;
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    const int r = q ? r1 : r0;
    if (r < 0) continue;
    const float m = q ? m1 : m0, sc = m > 0.f && isfinite(m) ? m / e4m3_max : 1.f, inv = 1.f / sc;
    uint8_t* dst = p.hq + static_cast<size_t>(r) * inter + hb * f8_group + 4 * t;
#pragma unroll
    for (int a = 0; a < 8; ++a) {
      const float* v0 = sum + 8 * a + 2 * q;  // j = 2 a: registers 4 j + 2 q + {0, 1}
      const float* v1 = v0 + 4;               // j = 2 a + 1
      const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(v0[0] * inv, v0[1] * inv), __NV_SATFINITE, __NV_E4M3);
      const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(v1[0] * inv, v1[1] * inv), __NV_SATFINITE, __NV_E4M3);
      *reinterpret_cast<uint32_t*>(dst + 16 * a) = lo | (hi << 16);
    }
    if (t == 0) p.hs[static_cast<size_t>(hb) * p.hs_pitch + r] = sc;
  }
}

template <bool Gather, int BN>
__global__ void __launch_bounds__(threads, 1) f8_grouped_gemm(const __grid_constant__ f8_grouped_problem p) {
  using S = tile_shape<BN>;
  constexpr int stages = S::stages, scale_floats = S::scale_floats, halves = S::halves;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  uint8_t* sa = smem;
  uint8_t* sb = smem + stages * tile_bytes;
  float* scales = reinterpret_cast<float*>(sb + stages * S::b_bytes);  // [stages][scale_floats]
  uint64_t* full = reinterpret_cast<uint64_t*>(scales + stages * scale_floats);
  uint64_t* empty = full + stages;
  int* prefix = reinterpret_cast<int*>(empty + stages);  // [experts + 1]: m tiles before each expert

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, E = p.experts;
  if (warp == 0) {
    count_m_tiles(p.offsets, E, BM, prefix, lane);
    if (lane == 0) {
      for (int s = 0; s < stages; ++s) {
        mbar_init(&full[s], Gather ? 1 + 128 : 1 + 32);  // the expect_tx arrival + each copying thread's
        mbar_init(&empty[s], 8);  // one arrival per consumer warp
      }
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
  }
  __syncthreads();
  const int nb = p.n / BN, kt_count = p.k / BK, total = prefix[E] * nb;
  // With `hq` (SiLU fused), tile column n0 / 2 of h takes gate rows [n0 / 2, + 128) and up rows
  // [n / 2 + n0 / 2, + 128): half h's first row of B within the expert, and its weight block.
  auto half_row = [&](const tile_at& at, int h) { return p.hq ? h * (p.n / 2) + at.n0 / 2 : at.n0 + 128 * h; };
  // Whether tile `at` reads the other matrix (f8_grouped_problem::b_last).
  auto last = [&](const tile_at& at) { return p.b_last_scale && at.e == E - 1; };
  // Half h's weight block scales, one per k block.
  auto weight_scales = [&](const tile_at& at, int h) {
    if (last(at)) return p.b_last_scale + static_cast<size_t>(half_row(at, h) / 128) * kt_count;
    return p.b_scale + (static_cast<size_t>(at.e) * (p.n / 128) + half_row(at, h) / 128) * kt_count;
  };
  // Loads the weight tile's halves of k block kt into stage s, 128 rows a box.
  auto load_b = [&](int s, int kt, const tile_at& at) {
    const bool own = last(at);
#pragma unroll
    for (int h = 0; h < halves; ++h)
      tma_load(sb + s * S::b_bytes + h * tile_bytes, own ? &p.b_last.map : &p.b.map, &full[s], kt * BK,
               (own ? 0 : at.e * p.n) + half_row(at, h));
  };
  if (halves > 1) {
    if (warp < 4) registers_dec<producer_registers>();
    else registers_inc<consumer_registers>();
  }

  if (Gather && warp < 4) {  // producer warpgroup: B by TMA, A's rows by every thread
    const int tid = threadIdx.x, q = tid & 7;  // rows tid / 8 + 16 j, 16-byte chunk q of each
    uint32_t it = 0;
    for (int t = blockIdx.x; t < total; t += gridDim.x) {
      const tile_at at = find_tile(prefix, p.offsets, E, nb, BM, BN, t);
      // Each of the thread's rows: its token (-1 past the expert's rows) and the address of its
      // 16-byte chunk q, computed once a tile (deriving it from the token every k block made the
      // F8 forward 11 % slower at T = 4096 and 12 % at T = 1024 on an H100: docs/cuda.md).
      const uint8_t* src[8];
      int token[8];
      for (int j = 0; j < 8; ++j) {
        const int r = at.row0 + (tid >> 3) + 16 * j;
        token[j] = r < at.row_end ? p.gather[r] : -1;
        src[j] = token[j] >= 0 ? p.a_rows + static_cast<size_t>(token[j]) * p.k + 16 * q : nullptr;
      }
      const float* bs[halves];
      for (int h = 0; h < halves; ++h) bs[h] = weight_scales(at, h);
      for (int kt = 0; kt < kt_count; ++kt, ++it) {
        const int s = static_cast<int>(it % stages);
        mbar_wait(&empty[s], ((it / stages) & 1) ^ 1);
        if (tid == 0) {
          mbar_expect_tx(&full[s], S::b_bytes);
          load_b(s, kt, at);
        }
        const uint32_t base = smem_u32(sa + s * tile_bytes), sbase = smem_u32(scales + s * scale_floats);
        const float* as = p.a_scale + static_cast<size_t>(kt) * p.a_pitch;
        cp_async_rows_sw128(base, tid, p.a_rows, [&](int j) -> const void* { return src[j] ? src[j] + kt * BK : nullptr; });
        if (q == 0)  // each row's activation scale
#pragma unroll
          for (int j = 0; j < 8; ++j)
            cp_async4(sbase + 4 * ((tid >> 3) + 16 * j), token[j] >= 0 ? as + token[j] : as, token[j] >= 0);
        if (tid == 0)
          for (int h = 0; h < halves; ++h) cp_async4(sbase + 4 * (BM + h), bs[h] + kt, true);
        cp_async_arrive(&full[s]);
      }
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
    return;
  }
  if (warp < 4) {  // producer warpgroup: warp 0 issues every load, lane 0 the TMA ones
    if (warp == 0) {
      uint32_t it = 0;
      for (int t = blockIdx.x; t < total; t += gridDim.x) {
        const tile_at at = find_tile(prefix, p.offsets, E, nb, BM, BN, t);
        const float* bs[halves];
        for (int h = 0; h < halves; ++h) bs[h] = weight_scales(at, h);
        for (int kt = 0; kt < kt_count; ++kt, ++it) {
          const int s = static_cast<int>(it % stages);
          mbar_wait(&empty[s], ((it / stages) & 1) ^ 1);
          if (lane == 0) {
            mbar_expect_tx(&full[s], tile_bytes + S::b_bytes);
            tma_load(sa + s * tile_bytes, &p.a.map, &full[s], kt * BK, at.row0);
            load_b(s, kt, at);
          }
          const uint32_t sbase = smem_u32(scales + s * scale_floats);
          const float* as = p.a_scale + static_cast<size_t>(kt) * p.a_pitch;
#pragma unroll
          for (int j = 0; j < BM / 32; ++j) {
            const int r = lane + 32 * j, row = at.row0 + r;
            cp_async4(sbase + 4 * r, as + min(row, p.a_pitch - 1), row < at.row_end);
          }
          if (lane == 0)
            for (int h = 0; h < halves; ++h) cp_async4(sbase + 4 * (BM + h), bs[h] + kt, true);
          cp_async_arrive(&full[s]);
        }
      }
      asm volatile("cp.async.wait_all;" ::: "memory");
    }
    return;
  }

  // Consumers. Thread (warp w of the warpgroup, lane l) holds rows 16 w + l / 4 (+ 8) of the
  // warpgroup's 64 and columns 8 j + 2 (l % 4) (+ 1): register 4 j + {0, 1} and 4 j + {2, 3}.
  const int cg = (warp >> 2) - 1, wr = cg * 64 + (warp & 3) * 16 + (lane >> 2);
  uint32_t it = 0;
  for (int t = blockIdx.x; t < total; t += gridDim.x) {
    const tile_at at = find_tile(prefix, p.offsets, E, nb, BM, BN, t);
    float acc[64], sum[64 * halves];
    if constexpr (halves == 2) {
      // A tile of 64 rows or fewer (an expert's last, often: at 128 rows an expert on average,
      // about half the experts spill a few rows into a second tile): the warpgroups split its
      // columns rather than its rows, each multiplying rows 0-63 by its own 128-column half, so
      // both keep working and the tile costs half the MMAs. Same products in the same order as
      // the row split, so the same bits. (Not with the fused SiLU, whose epilogue needs a
      // thread's gate and up columns together.)
      if (!p.hq && at.row_end - at.row0 <= 64) {
        const int wn = (warp & 3) * 16 + (lane >> 2), r0 = at.row0 + wn, r1 = r0 + 8;
#pragma unroll
        for (int i = 0; i < 64; ++i) sum[i] = 0.f;
        for (int kt = 0; kt < kt_count; ++kt, ++it) {
          const int s = static_cast<int>(it % stages);
          mbar_wait(&full[s], (it / stages) & 1);
          const float* sc = scales + s * scale_floats;
          mma_k_block(acc, sw128_desc(sa + s * tile_bytes), sw128_desc(sb + s * S::b_bytes + cg * tile_bytes));
          if (lane == 0) mbar_arrive(&empty[s]);
          const float ws = sc[BM + cg], s0 = sc[wn] * ws, s1 = sc[wn + 8] * ws;
#pragma unroll
          for (int i = 0; i < 64; ++i) sum[i] = fmaf(acc[i], (i & 2) ? s1 : s0, sum[i]);
        }
        const int c = at.n0 + 128 * cg + 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          if (r0 < at.row_end)
            *reinterpret_cast<__nv_bfloat162*>(p.d + static_cast<size_t>(r0) * p.n + c + 8 * j) =
                __floats2bfloat162_rn(sum[4 * j], sum[4 * j + 1]);
          if (r1 < at.row_end)
            *reinterpret_cast<__nv_bfloat162*>(p.d + static_cast<size_t>(r1) * p.n + c + 8 * j) =
                __floats2bfloat162_rn(sum[4 * j + 2], sum[4 * j + 3]);
        }
        continue;
      }
    }
    const int r0 = at.row0 + wr, r1 = r0 + 8;
#pragma unroll
    for (int i = 0; i < 64 * halves; ++i) sum[i] = 0.f;
    for (int kt = 0; kt < kt_count; ++kt, ++it) {
      const int s = static_cast<int>(it % stages);
      mbar_wait(&full[s], (it / stages) & 1);
      // A's gathered rows were written through the generic proxy; wgmma reads through the async one.
      if (Gather) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      const float* sc = scales + s * scale_floats;
      const float a0 = sc[wr], a1 = sc[wr + 8];
      const uint64_t da = sw128_desc(sa + s * tile_bytes + cg * 64 * BK);
#pragma unroll
      for (int h = 0; h < halves; ++h) {
        mma_k_block(acc, da, sw128_desc(sb + s * S::b_bytes + h * tile_bytes));
        if (h == halves - 1 && lane == 0) mbar_arrive(&empty[s]);
        const float ws = sc[BM + h], s0 = a0 * ws, s1 = a1 * ws;
#pragma unroll
        for (int i = 0; i < 64; ++i) sum[64 * h + i] = fmaf(acc[i], (i & 2) ? s1 : s0, sum[64 * h + i]);
      }
    }
    if constexpr (halves == 2) {
      if (p.hq) {
        silu_quantize_epilogue(sum, p, at.n0 / 256, r0 < at.row_end ? r0 : -1, r1 < at.row_end ? r1 : -1, lane);
        continue;
      }
    }
    const int c = at.n0 + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < 16 * halves; ++j) {
      if (r0 < at.row_end)
        *reinterpret_cast<__nv_bfloat162*>(p.d + static_cast<size_t>(r0) * p.n + c + 8 * j) =
            __floats2bfloat162_rn(sum[4 * j], sum[4 * j + 1]);
      if (r1 < at.row_end)
        *reinterpret_cast<__nv_bfloat162*>(p.d + static_cast<size_t>(r1) * p.n + c + 8 * j) =
            __floats2bfloat162_rn(sum[4 * j + 2], sum[4 * j + 3]);
    }
  }
}

}  // namespace

f8_matrix make_f8_matrix(const uint8_t* base, uint64_t rows, uint64_t cols, const char* what) {
  return {make_sw128_map(base, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, rows, cols, BM, what)};
}

namespace {

template <int BN>
void launch_with(const f8_grouped_problem& p, int sms, int rows_bound, cudaStream_t stream) {
  using S = tile_shape<BN>;
  static const bool sized = [] {
    cudaFuncSetAttribute(f8_grouped_gemm<false, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(S::smem_bytes));
    if constexpr (BN == 128)
      cudaFuncSetAttribute(f8_grouped_gemm<true, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(S::smem_bytes));
    return true;
  }();
  (void)sized;
  const long long tiles = (static_cast<long long>(rows_bound) + BM - 1) / BM + p.experts;
  const int grid = static_cast<int>(std::min<long long>(sms, tiles * (p.n / BN)));
  if (grid <= 0) return;
  if constexpr (BN == 128) {
    if (p.gather) {
      f8_grouped_gemm<true, BN><<<grid, threads, S::smem_bytes, stream>>>(p);
      return;
    }
  }
  f8_grouped_gemm<false, BN><<<grid, threads, S::smem_bytes, stream>>>(p);
}

}  // namespace

void launch_f8_grouped_gemm(const f8_grouped_problem& p, int rows_bound, cudaStream_t stream) {
  if (p.experts > max_experts || p.n % 128 || p.k % BK)
    throw std::runtime_error("FP8 grouped GEMM: " + std::to_string(p.experts) + " experts, n " + std::to_string(p.n) +
                             ", k " + std::to_string(p.k) + " (at most 4096 experts, n and k multiples of 128)");
  if (p.hq && f8_grouped_tile_columns(p) != 256)
    throw std::runtime_error("FP8 grouped GEMM: the fused SiLU output needs 128 x 256 tiles (wide, no gather, n % 256 == 0)");
  static const int sms = [] {
    int device = 0, n = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
    return std::max(n, 1);
  }();
  if (f8_grouped_tile_columns(p) == 256) launch_with<256>(p, sms, rows_bound, stream);
  else launch_with<128>(p, sms, rows_bound, stream);
  check_launch("FP8 grouped GEMM");
}

}  // namespace moereg::cuda
