// SPDX-License-Identifier: Apache-2.0
// bf16_grouped_gemm.cu - the grouped bf16 GEMM (see bf16_grouped_gemm.cuh).
//
// One CTA: a producer warp issues the TMA loads of a 128-row A tile and the tile's B rows (64
// columns of k: one 128-byte swizzle row each) into a ring of shared-memory stages; two consumer
// warpgroups each multiply 64 of the tile's rows by all its columns (four wgmma m64nNk16 a
// stage), keeping one stage's MMAs in flight while the next stage's are issued: the sums
// stay in the tensor cores' f32 accumulators for the whole of k (no scales to promote by, unlike
// the FP8 GEMM). The ring's stages are handed over by mbarriers: `full` (the TMA bytes landed)
// and `empty` (both consumers' wgmmas have read the stage).
//
// A tile of at most 64 rows (an expert's only or last tile, often: at 64 rows an expert on
// average, half the tiles) with 256 columns: the two warpgroups split the columns rather than
// the rows, each multiplying rows 0-63 by its 128-column half (m64n128k16), so the tile costs half
// the MMAs and both warpgroups stay busy.
#include "bf16_grouped_gemm.cuh"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "hopper.cuh"
#include "moe_kernels.cuh"

namespace moereg::cuda {

namespace {

constexpr int BM = 128, BK = 64;           // BK bf16 = 128 bytes: one swizzle row
constexpr int box_bytes = BM * BK * 2;     // A's tile, and B's per 128 output columns
constexpr int threads = 384;               // warpgroup 0: producer; 1 and 2: consumers
constexpr int max_experts = 4096;
// 128 x 40 + 256 x 232 registers <= 64 Ki: the consumers hold 128 f32 sums (64 x 256 / 128 threads).
constexpr int producer_registers = 40, gathering_producer_registers = 48, consumer_registers = 232;

template <int BN>
struct tile_shape {
  static constexpr int boxes = BN / 128;
  static constexpr int b_bytes = boxes * box_bytes;
  static constexpr int stages = boxes == 1 ? 6 : 4;
  static constexpr size_t smem_bytes =
      1024 /* alignment */ + stages * (box_bytes + b_bytes) + 2 * stages * 8 + (max_experts + 1) * sizeof(int);
  static_assert(smem_bytes <= 227 * 1024, "more shared memory than an SM has");
};

// d (the first 128 f32 of each thread: the warpgroup's 64 x 256 block) = A(64 x 16) B(256 x 16)^T + (accumulate ? d : 0).
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t a, uint64_t b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n"
      "}\n"
      : MOEREG_WGMMA_ACC8(0), MOEREG_WGMMA_ACC8(8), MOEREG_WGMMA_ACC8(16), MOEREG_WGMMA_ACC8(24), MOEREG_WGMMA_ACC8(32), MOEREG_WGMMA_ACC8(40), MOEREG_WGMMA_ACC8(48), MOEREG_WGMMA_ACC8(56), MOEREG_WGMMA_ACC8(64), MOEREG_WGMMA_ACC8(72), MOEREG_WGMMA_ACC8(80), MOEREG_WGMMA_ACC8(88), MOEREG_WGMMA_ACC8(96), MOEREG_WGMMA_ACC8(104), MOEREG_WGMMA_ACC8(112), MOEREG_WGMMA_ACC8(120)
      : "l"(a), "l"(b), "r"(accumulate));
}
// d (the first 64 f32 of each thread: the warpgroup's 64 x 128 block) = A(64 x 16) B(128 x 16)^T + (accumulate ? d : 0).
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[128], uint64_t a, uint64_t b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n"
      "}\n"
      : MOEREG_WGMMA_ACC8(0), MOEREG_WGMMA_ACC8(8), MOEREG_WGMMA_ACC8(16), MOEREG_WGMMA_ACC8(24), MOEREG_WGMMA_ACC8(32), MOEREG_WGMMA_ACC8(40), MOEREG_WGMMA_ACC8(48), MOEREG_WGMMA_ACC8(56)
      : "l"(a), "l"(b), "r"(accumulate));
}

// Stores a warpgroup's 64 x (8 * J) block of bf16 results from sums d: thread (warp w of the
// warpgroup, lane l) holds rows r0 = 16 w + l / 4 and r0 + 8 (registers 4 j + {0, 1} and
// 4 j + {2, 3}) at columns c + 8 j (+ 1). Rows at or past row_end are not stored.
template <int J>
__device__ __forceinline__ void store_rows(const float (&d)[128], __nv_bfloat16* out, int n, int r0, int row_end, int c) {
  const int r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < J; ++j) {
    if (r0 < row_end)
      *reinterpret_cast<__nv_bfloat162*>(out + static_cast<size_t>(r0) * n + c + 8 * j) =
          __floats2bfloat162_rn(d[4 * j], d[4 * j + 1]);
    if (r1 < row_end)
      *reinterpret_cast<__nv_bfloat162*>(out + static_cast<size_t>(r1) * n + c + 8 * j) =
          __floats2bfloat162_rn(d[4 * j + 2], d[4 * j + 3]);
  }
}

// The fused gate/up epilogue (bf16_grouped_problem::h): h = SiLU(gate) * up of a warpgroup's
// 64 rows by 64 columns, from a 128-column block of sums d[O, O + 64) whose first 64 columns
// are gate rows and last 64 the matching up rows (gate column 8 j + c in d[O + 4 j + ...], its
// up column in d[O + 4 (j + 8) + ...]). Gate and up are rounded to bf16 first and the
// arithmetic is silu_rows's (bf16_grouped_experts.cu), so h has the bits the separate pass
// would write.
template <int O>
__device__ __forceinline__ void store_silu_rows(const float (&d)[128], __nv_bfloat16* h, int n, int r0, int row_end, int c) {
  const int r1 = r0 + 8;
  auto silu = [](float g, float u) {
    const float a = __bfloat162float(__float2bfloat16_rn(g)), b = __bfloat162float(__float2bfloat16_rn(u));
    return a / (1.f + __expf(-a)) * b;
  };
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int g = O + 4 * j, u = O + 4 * (j + 8);
    if (r0 < row_end)
      *reinterpret_cast<__nv_bfloat162*>(h + static_cast<size_t>(r0) * n + c + 8 * j) =
          __floats2bfloat162_rn(silu(d[g], d[u]), silu(d[g + 1], d[u + 1]));
    if (r1 < row_end)
      *reinterpret_cast<__nv_bfloat162*>(h + static_cast<size_t>(r1) * n + c + 8 * j) =
          __floats2bfloat162_rn(silu(d[g + 2], d[u + 2]), silu(d[g + 3], d[u + 3]));
  }
}

// One tile's k loop of a consumer warpgroup: each stage's four k16 wgmmas (N = 256: rows by
// every column; 128: rows by one 128-column box) on A rows da and B rows db of the stage, one
// stage's MMAs left in flight while the next are issued, each stage released once read. `it`
// counts the stages the CTA has consumed.
template <int N, int Stages, int BBytes, bool Gathered = false>
__device__ __forceinline__ void mma_tile(float (&acc)[128], const uint8_t* sa, const uint8_t* sb, uint32_t a_off,
                                         uint32_t b_off, uint64_t* full, uint64_t* empty, int kt_count, uint32_t& it,
                                         int lane) {
#pragma unroll
  for (int i = 0; i < 128; ++i) fence_operand(acc[i]);
  int prev = -1;
  for (int kt = 0; kt < kt_count; ++kt, ++it) {
    const int s = static_cast<int>(it % Stages);
    mbar_wait(&full[s], (it / Stages) & 1);
    // Gathered A rows were written through the generic proxy; wgmma reads through the async one.
    if constexpr (Gathered) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    const uint64_t da = sw128_desc(sa + s * box_bytes + a_off), db = sw128_desc(sb + s * BBytes + b_off);
    wgmma_fence();
#pragma unroll
    for (int k = 0; k < BK / 16; ++k) {
      if constexpr (N == 256) wgmma_m64n256k16(acc, da + 2 * k, db + 2 * k, kt | k);
      else wgmma_m64n128k16(acc, da + 2 * k, db + 2 * k, kt | k);
    }
    wgmma_commit();
    // The stage before this one is read once at most one group (this one) is in flight.
    wgmma_wait<1>();
    if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
    prev = s;
  }
  wgmma_wait<0>();
  if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
#pragma unroll
  for (int i = 0; i < 128; ++i) fence_operand(acc[i]);
}

template <int BN, bool Silu, bool Gather>  // Silu: p.h is set; Gather: p.gather is (bf16_grouped_problem)
__global__ void __launch_bounds__(threads, 1) bf16_grouped_gemm(const __grid_constant__ bf16_grouped_problem p) {
  using S = tile_shape<BN>;
  constexpr int stages = S::stages, boxes = S::boxes;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  uint8_t* sa = smem;
  uint8_t* sb = smem + stages * box_bytes;
  uint64_t* full = reinterpret_cast<uint64_t*>(sb + stages * S::b_bytes);
  uint64_t* empty = full + stages;
  int* prefix = reinterpret_cast<int*>(empty + stages);  // [experts + 1]: m tiles before each expert

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, E = p.experts;
  if (warp == 0) {
    count_m_tiles(p.offsets, E, BM, prefix, lane);
    if (lane == 0) {
      for (int s = 0; s < stages; ++s) {
        mbar_init(&full[s], Gather ? 1 + 128 : 1);  // the expect_tx arrival (+ each gathering thread's)
        mbar_init(&empty[s], 8);  // one arrival per consumer warp
      }
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
  }
  __syncthreads();
  const int nb = p.n / BN, kt_count = p.k / BK, total = prefix[E] * nb;
  // A gathering producer keeps 8 row offsets a thread: 48 registers (128 x 48 + 256 x 232 is
  // the whole register file).
  if (warp < 4) registers_dec<Gather ? gathering_producer_registers : producer_registers>();
  else registers_inc<consumer_registers>();

  // The tile's weight rows of k block kt into stage s (by TMA, on full[s]).
  auto load_b = [&](int s, int kt, const tile_at& at) {
    const bool own = p.has_last && at.e == E - 1;
    const int brow = (own ? 0 : at.e * p.n) + (Silu ? at.n0 / 2 : at.n0);
    if constexpr (Silu) {
      // Box h: gate rows [n0 / 2 + 64 h, + 64), then the matching up rows (n / 2 further),
      // so each box is a 128-column block of 64 gate columns and their 64 up columns.
      const CUtensorMap* half = own ? &p.b_last.half : &p.b.half;
#pragma unroll
      for (int h = 0; h < boxes; ++h)
        for (int u = 0; u < 2; ++u)
          tma_load(sb + s * S::b_bytes + h * box_bytes + u * (box_bytes / 2), half, &full[s], kt * BK,
                   brow + 64 * h + u * (p.n / 2));
    } else {
      const CUtensorMap* bmap = own ? &p.b_last.map : &p.b.map;
#pragma unroll
      for (int h = 0; h < boxes; ++h) tma_load(sb + s * S::b_bytes + h * box_bytes, bmap, &full[s], kt * BK, brow + 128 * h);
    }
  };

  if (Gather && warp < 4) {  // producer warpgroup: B by TMA, A's rows by every thread
    // Each stage's A tile by cp_async_rows_sw128; the thread's arrival on full[s] fires when its
    // copies land. Sorted row r reads its token's row of x; a shared expert's rows (the last
    // expert of a launch with b_last) are the tokens in order.
    const int tid = threadIdx.x, q = tid & 7;
    const int routed = p.has_last ? p.offsets[E - 1] : INT_MAX;
    uint32_t it = 0;
    for (int t = blockIdx.x; t < total; t += gridDim.x) {
      const tile_at at = find_tile(prefix, p.offsets, E, nb, BM, BN, t);
      // Each row's chunk q as a count of 16-byte chunks from a_rows (UINT32_MAX past the
      // expert's rows): 8 registers where 8 pointers spilled the producer's 48.
      uint32_t chunk[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int r = at.row0 + (tid >> 3) + 16 * j;
        chunk[j] = r < at.row_end ? static_cast<uint32_t>(
                                        (static_cast<size_t>(r < routed ? p.gather[r] : r - routed) * p.k + 8 * q) / 8)
                                  : UINT32_MAX;
      }
      for (int kt = 0; kt < kt_count; ++kt, ++it) {
        const int s = static_cast<int>(it % stages);
        mbar_wait(&empty[s], ((it / stages) & 1) ^ 1);
        if (tid == 0) {
          mbar_expect_tx(&full[s], S::b_bytes);
          load_b(s, kt, at);
        }
        cp_async_rows_sw128(smem_u32(sa + s * box_bytes), tid, p.a_rows, [&](int j) -> const void* {
          return chunk[j] != UINT32_MAX ? p.a_rows + 8 * static_cast<size_t>(chunk[j]) + kt * BK : nullptr;
        });
        cp_async_arrive(&full[s]);
      }
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
    return;
  }
  if (warp < 4) {  // producer warpgroup: lane 0 of warp 0 issues every load
    if (warp == 0 && lane == 0) {
      uint32_t it = 0;
      for (int t = blockIdx.x; t < total; t += gridDim.x) {
        const tile_at at = find_tile(prefix, p.offsets, E, nb, BM, BN, t);
        for (int kt = 0; kt < kt_count; ++kt, ++it) {
          const int s = static_cast<int>(it % stages);
          mbar_wait(&empty[s], ((it / stages) & 1) ^ 1);
          // A tile split by columns reads rows 0-63 only: a 64-row box.
          const bool narrow = BN == 256 && at.row_end - at.row0 <= 64;
          mbar_expect_tx(&full[s], (narrow ? box_bytes / 2 : box_bytes) + S::b_bytes);
          tma_load(sa + s * box_bytes, narrow ? &p.a.half : &p.a.map, &full[s], kt * BK, at.row0);
          load_b(s, kt, at);
        }
      }
    }
    return;
  }

  // Consumers: warpgroup cg (0 or 1); thread (warp w of the warpgroup, lane l).
  const int cg = (warp >> 2) - 1, wrow = (warp & 3) * 16 + (lane >> 2), col = 2 * (lane & 3);
  uint32_t it = 0;
  for (int t = blockIdx.x; t < total; t += gridDim.x) {
    const tile_at at = find_tile(prefix, p.offsets, E, nb, BM, BN, t);
    float acc[128];
    if constexpr (BN == 256) {
      if (at.row_end - at.row0 <= 64) {
        // rows 0-63 by column half (box) cg
        mma_tile<128, stages, S::b_bytes, Gather>(acc, sa, sb, 0, cg * box_bytes, full, empty, kt_count, it, lane);
        if constexpr (Silu) store_silu_rows<0>(acc, p.h, p.n / 2, at.row0 + wrow, at.row_end, at.n0 / 2 + 64 * cg + col);
        else store_rows<16>(acc, p.d, p.n, at.row0 + wrow, at.row_end, at.n0 + 128 * cg + col);
        continue;
      }
    }
    // rows 64 cg + [0, 64) by every column
    mma_tile<BN, stages, S::b_bytes, Gather>(acc, sa, sb, cg * 64 * 128, 0, full, empty, kt_count, it, lane);
    if constexpr (Silu) {  // each box's block: 64 gate columns, then their 64 up columns
      store_silu_rows<0>(acc, p.h, p.n / 2, at.row0 + cg * 64 + wrow, at.row_end, at.n0 / 2 + col);
      store_silu_rows<64>(acc, p.h, p.n / 2, at.row0 + cg * 64 + wrow, at.row_end, at.n0 / 2 + 64 + col);
    } else
      store_rows<BN / 8>(acc, p.d, p.n, at.row0 + cg * 64 + wrow, at.row_end, at.n0 + col);
  }
}

template <int BN, bool Silu, bool Gather>
void launch_with(const bf16_grouped_problem& p, int sms, int rows_bound, cudaStream_t stream) {
  using S = tile_shape<BN>;
  static const bool sized = [] {
    cudaFuncSetAttribute(bf16_grouped_gemm<BN, Silu, Gather>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(S::smem_bytes));
    return true;
  }();
  (void)sized;
  const long long tiles = (static_cast<long long>(rows_bound) + BM - 1) / BM + p.experts;
  const int grid = static_cast<int>(std::min<long long>(sms, tiles * (p.n / BN)));
  if (grid <= 0) return;
  bf16_grouped_gemm<BN, Silu, Gather><<<grid, threads, S::smem_bytes, stream>>>(p);
}

}  // namespace

bf16_matrix make_bf16_matrix(const __nv_bfloat16* base, uint64_t rows, uint64_t cols, const char* what) {
  return {make_sw128_map(base, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, rows, cols, BM, what),
          make_sw128_map(base, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, rows, cols, BM / 2, what)};
}

void launch_bf16_grouped_gemm(const bf16_grouped_problem& p, int rows_bound, cudaStream_t stream) {
  if (p.experts > max_experts || p.experts < 1 || p.n % 128 || p.k % BK)
    throw std::runtime_error("bf16 grouped GEMM: " + std::to_string(p.experts) + " experts, n " + std::to_string(p.n) +
                             ", k " + std::to_string(p.k) + " (1 to 4096 experts, n a multiple of 128, k of 64)");
  static const int sms = [] {
    int device = 0, n = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
    return std::max(n, 1);
  }();
  if (p.h && bf16_grouped_tile_columns(p.n) != 256)
    throw std::runtime_error("bf16 grouped GEMM: the fused SiLU needs gate/up columns n a multiple of 256, not " +
                             std::to_string(p.n));
  const bool wide = bf16_grouped_tile_columns(p.n) == 256;
  if (p.gather) {
    if (p.h) launch_with<256, true, true>(p, sms, rows_bound, stream);
    else if (wide) launch_with<256, false, true>(p, sms, rows_bound, stream);
    else launch_with<128, false, true>(p, sms, rows_bound, stream);
  } else {
    if (p.h) launch_with<256, true, false>(p, sms, rows_bound, stream);
    else if (wide) launch_with<256, false, false>(p, sms, rows_bound, stream);
    else launch_with<128, false, false>(p, sms, rows_bound, stream);
  }
  check_launch("bf16 grouped GEMM");
}

}  // namespace moereg::cuda
