// SPDX-License-Identifier: Apache-2.0
// cpu_int_dot.h - integer dot products on the online-quantized experts (backend options
// quantize=int8|int4 with int_dot): weights stay int8 or packed int4 codes, activations are
// quantized per token and group of K to int8 on the fly, products are summed in int32 and
// the two scales are applied once per group (or part of a group a K pass holds).
//
// Activation rows (act_rows below) are made by the engine (cpu_moe_int.cpp), one layout for
// every ISA: codes padded with zeros to whole chunks of 64, one F32 scale per group, and the
// int32 sum of the codes of every 64-chunk (the tiles that multiply unsigned weight bytes by
// the signed activations, vpdpbusd and vpmaddubsw, subtract bias x that sum). With int4
// weights each 64-chunk is stored permuted, even elements first: positions 0..31 hold
// x[k0 + 2i], 32..63 x[k0 + 2i + 1], because the 32 code bytes of a chunk unpack in-register
// into their 32 low nibbles (even k) and 32 high nibbles (odd k).
//
// Like cpu_kernels.h, no STL: the kernel translation units include it with ISA flags.
#pragma once

#include <cstdint>

namespace moereg::cpu {

inline constexpr std::int64_t int_chunk = 64;  // elements per chunk of the layout (and per AMX step)
// The tiles flush their int32 sums to f32 at least every this many chunks: 255 x 127 x 4096
// stays below 2^31 for any sum a chunk run can hold.
inline constexpr std::int64_t int_flush_chunks = 64;

// One tile's operands over one K pass [k0, k0 + k_len): k0 a multiple of 64, k_len a multiple
// of 64 or up to the rows' end. M activation rows and N weight rows, each given at its start.
struct int_rows {
  const std::int8_t* const* a;       // [M] activation codes
  const float* const* a_scale;       // [M] one per group
  const std::int32_t* const* a_sum;  // [M] one per 64-chunk
  const void* const* b;              // [N] weight codes: int8, or int4 (q + 8, two a byte, low nibble first)
  const float* const* b_scale;       // [N] one per group
  std::int64_t k0, k_len;
  std::int64_t k;      // the rows' length (codes past it are never read)
  std::int64_t group;  // elements per scale: a multiple of 64, or >= k (one scale per row)
};
// c[m * N + n] = sum over the pass's groups (parts) g of ws[n][g] x as[m][g] x sum_k w q_a.
using int_tile_fn = void (*)(const int_rows& r, float* c);

// AMX INT8 (tdpbssd), the same W . X^T shape as the bf16 unit (cpu_kernels.h): A tiles are 16
// weight rows x 64 int8 (signed: int4 codes unpacked and recentred), B tiles the activations
// of 16 tokens, four consecutive codes of a token side by side: B row kk holds, per token t,
// chunk bytes 4kk .. 4kk + 3. C tiles are 16 x 16 int32.
// A's 16 weight rows for a run of steps: row r of step s (64 bytes) at p + s * step + r * stride.
// In place in an int8 matrix: step 64, stride the row's bytes; in a panel: step 1024, stride 64.
struct int8_rows {
  const void* p;
  std::int64_t stride;
  std::int64_t step;
};
struct int_unit {
  const char* name = nullptr;  // "amx_int8", "amx_int8_emulated"; nullptr: none
  void (*begin)() = nullptr;
  void (*end)() = nullptr;
  // c[2 ia + ib] (+)= A_ia . B_ib over `steps` 64-element steps: A_ia's rows as int8_rows,
  // B_ib's step s at b[ib] + 1024 s (contiguous KiB tiles); each c tile 16 x 16 int32, 256 apart.
  void (*block)(const int8_rows* a, int na, const void* const* b, int nb, std::int64_t steps, std::int32_t* c,
                bool accumulate) = nullptr;
  // 16 token rows (act_rows codes; nullptr: zeros), chunks [c0, c0 + steps), into `steps` B tiles.
  void (*pack)(const std::int8_t* const* rows, std::int64_t c0, std::int64_t steps, std::int8_t* dst) = nullptr;
  // `rows` (<= 16) weight rows of length k from `src`, `stride` bytes apart (int4: packed),
  // chunks [c0, c0 + steps), into `steps` A tiles of signed codes, int4 in the act_rows
  // permutation; zeros past the rows and past k.
  void (*load_rows)(const void* src, std::int64_t stride, int rows, bool int4, std::int64_t k, std::int64_t c0,
                    std::int64_t steps, std::int8_t* dst) = nullptr;
  // acc[16 m + t] = (accumulate ? acc : 0) + c[16 m + t] x ws[m] x as[t] (16 x 16).
  void (*scale_acc)(const std::int32_t* c, const float* ws, const float* as, float* acc, bool accumulate) = nullptr;
  // The epilogues, from 16 x 16 f32 sums (row m: a weight row, column t: a token) to token
  // rows, for m < rows, t < tokens: h[t][m] = silu(g[16 m + t]) x u[16 m + t], silu(x) =
  // x / (1 + e^-x); y[t][m] = w[t] x c[16 m + t].
  void (*silu_out)(const float* g, const float* u, int rows, int tokens, float* const* h) = nullptr;
  void (*scale_out)(const float* c, int rows, int tokens, const float* w, float* const* y) = nullptr;
};

// Quantizes one activation row into the act_rows layout above: k values at src (f32, or bf16
// when bf16), in groups of `group` (a multiple of 64, or >= k: so no 64-chunk straddles two).
// Per group, with amax = max|x| (NaNs skipped): scale[g] = amax / 127 and codes
// nearbyint(x x (127 / amax)) clamped to +-127 (all 0 where amax is 0), int4 permuted per
// chunk; q zero-filled to whole chunks and sum[c] the int32 sum of chunk c's codes. Every
// version gives the scalar one's codes, scales and sums bit for bit (tests/unit/test_cpu_int_quantize.cpp).
using int_quantize_fn = void (*)(const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4,
                                 std::int8_t* q, float* scale, std::int32_t* sum);

struct int_kernels {
  const char* isa = nullptr;  // "avx512vnni", "avx_vnni", "avx2", "scalar"; nullptr: none
  int_quantize_fn quantize = nullptr;  // the activations' quantization, on the same ISA
  int tile_m = 1;             // full tile; fewer rows take up to max_tile_n weight rows
  int tile_n = 4;
  // tiles[int4][M - 1][N - 1]: int8 weights (0) or int4 (1)
  int_tile_fn tiles[2][4][8] = {};
  int_unit unit;
};

void fill_int_scalar(int_kernels& k);
void fill_int_avx2(int_kernels& k);        // AVX2: vpmaddubsw + vpmaddwd
void fill_int_avx_vnni(int_kernels& k);    // AVX2 + AVX-VNNI: vpdpbusd on 256 bits
void fill_int_avx512vnni(int_kernels& k);  // AVX-512 F/BW + VNNI
void fill_int_amx(int_unit& u, bool stream_y);  // AMX-TILE + AMX-INT8 (and AVX-512 around it)
void fill_int_amx_emulated(int_unit& u);   // the same contract in portable C++ (tests)

void int_quantize_scalar(const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4, std::int8_t* q,
                         float* scale, std::int32_t* sum);
void int_quantize_avx2(const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4, std::int8_t* q,
                       float* scale, std::int32_t* sum);  // AVX2
void int_quantize_avx512(const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4, std::int8_t* q,
                         float* scale, std::int32_t* sum);  // AVX-512 F/BW/VL

bool cpu_has_avx_vnni();
bool cpu_has_avx512vnni();
bool cpu_has_amx_int8();

}  // namespace moereg::cpu
