// SPDX-License-Identifier: Apache-2.0
// The integer tiles in portable C++: the reference the vector ones are tested against, and
// the path of CPUs without AVX2. Signed codes times signed codes, summed in int32 over each
// group's part in the pass, then scaled once. Also the cpuid checks of the integer ISAs
// (here, in a file compiled without ISA flags, so the checks run anywhere).
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu_int_dot.h"
#include "cpu_kernels.h"

namespace moereg::cpu {
namespace {

// Element of chunk position p (0..63) in the act_rows layout.
inline std::int64_t int_scalar_elem(bool int4, std::int64_t chunk, std::int64_t p) {
  return chunk * int_chunk + (!int4 ? p : p < 32 ? 2 * p : 2 * (p - 32) + 1);
}

inline int int_scalar_weight(const void* row, bool int4, std::int64_t k) {
  if (!int4) return static_cast<const std::int8_t*>(row)[k];
  const std::uint8_t b = static_cast<const std::uint8_t*>(row)[k / 2];
  return static_cast<int>(k % 2 ? b >> 4 : b & 15) - 8;
}

template <bool Int4, int M, int N>
void int_scalar_tile(const int_rows& r, float* c) {
  for (int i = 0; i < M * N; ++i) c[i] = 0.0f;
  const std::int64_t end = r.k0 + r.k_len < r.k ? r.k0 + r.k_len : r.k;
  std::int64_t chunk = r.k0 / int_chunk;
  while (chunk * int_chunk < end) {
    // One group's part: chunks up to the group's end, the pass's end or the flush limit.
    const std::int64_t g = chunk * int_chunk / r.group;
    std::int64_t stop = (g + 1) * r.group;
    if (stop > end) stop = end;
    if (stop > (chunk + int_flush_chunks) * int_chunk) stop = (chunk + int_flush_chunks) * int_chunk;
    std::int32_t sum[M][N] = {};
    for (; chunk * int_chunk < stop; ++chunk)
      for (std::int64_t p = 0; p < int_chunk; ++p) {
        const std::int64_t k = int_scalar_elem(Int4, chunk, p);
        if (k >= end) continue;
        for (int n = 0; n < N; ++n) {
          const int w = int_scalar_weight(r.b[n], Int4, k);
          for (int m = 0; m < M; ++m) sum[m][n] += w * r.a[m][chunk * int_chunk + p];
        }
      }
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) c[m * N + n] += static_cast<float>(sum[m][n]) * (r.b_scale[n][g] * r.a_scale[m][g]);
  }
}

template <bool Int4, int M = 1, int N = 1>
void fill_int_scalar_tiles(int_kernels& t) {
  t.tiles[Int4][M - 1][N - 1] = &int_scalar_tile<Int4, M, N>;
  if constexpr (N < 8) {
    fill_int_scalar_tiles<Int4, M, N + 1>(t);
  } else if constexpr (M < 4) {
    fill_int_scalar_tiles<Int4, M + 1, 1>(t);
  }
}

}  // namespace

void fill_int_scalar(int_kernels& k) {
  k.isa = "scalar";
  k.quantize = &int_quantize_scalar;
  k.tile_m = 2;
  k.tile_n = 4;
  fill_int_scalar_tiles<false>(k);
  fill_int_scalar_tiles<true>(k);
}

bool cpu_has_avx_vnni() { return cpu_has_avx2() && __builtin_cpu_supports("avxvnni"); }
bool cpu_has_avx512vnni() { return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni"); }
bool cpu_has_amx_int8() { return __builtin_cpu_supports("amx-int8") && cpu_has_amx(); }

}  // namespace moereg::cpu
