// SPDX-License-Identifier: Apache-2.0
// cpu_kernels.h - the CPU backend's inner tiles: C[m][n] = sum_k A_m[k] * B_n[k], over
// rows given by pointer (tokens gathered by expert without copying, weight rows where they
// lie). One table per instruction set; the engine picks one at create time.
//
// The kernel translation units are compiled with ISA flags and include no STL header, so
// no inline function compiled for AVX-512 can be picked by the linker for generic code.
#pragma once

#include <cstdint>

#include "cpu_int_dot.h"

namespace moereg::cpu {

// Element types of A (activations) and B (weights). FP8 weights (e4m3fn, with block
// scales) and the 4-bit codes (two per byte, low nibble first, with a scale per output row
// and group of inputs: symmetric int4 (q - 8) and MXFP4's e2m1) have no direct tiles: they
// are always widened into an f32 panel first.
// int8 (symmetric, w = q x s) comes from the online quantization at create (cpu_quantize.cpp);
// with int_dot the online int8/int4 codes take the integer tiles instead (cpu_int_dot.h).
// The ggml blocks of GGUF files (Q8_0, Q4_0: 32 values a block; Q4_K, Q6_K: 256) carry their
// scales inside; they too are always widened into panels (cpu_ggml_blocks.h), and so is F16,
// which GGUF files keep beside them (a tensor whose rows are no whole number of blocks).
enum elem_type : int {
  elem_f32 = 0, elem_bf16 = 1, elem_fp8 = 2, elem_int4 = 3, elem_mxfp4 = 4, elem_int8 = 5,
  elem_q8_0 = 6, elem_q4_0 = 7, elem_q4_k = 8, elem_q6_k = 9, elem_f16 = 10
};
inline constexpr int elem_type_count = 11;

inline constexpr int max_tile_m = 4;
inline constexpr int max_tile_n = 8;

// a: M row pointers, b: N row pointers, both K elements long; c: M x N row-major.
using tile_fn = void (*)(const void* const* a, const void* const* b, std::int64_t k, float* c);

// Widens elements [k0, k0 + n) of one row to f32: dst[i] = row[k0 + i] (x its scale for
// FP8 and the 4-bit codes: scale_row[(k0 + i) / scale_cols], in multiplier form; for 4-bit
// rows, element k is the nibble k % 2 of byte k / 2). scale_row and scale_cols are ignored
// for BF16 and the ggml blocks, whose rows are whole blocks and k0, n any range of them).
// FP8 NaN bytes (0x7F, 0xFF) and NaN scales stay NaN.
using widen_fn = void (*)(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row,
                          std::int64_t scale_cols, float* dst);

// A matrix unit (AMX): multiplies whole tiles of 16 rows x 32 bf16 by 32 x 16 bf16 into
// 16 x 16 f32, eight times the products per instruction of vdpbf16ps. The engine feeds it
// weight rows where they lie (16 rows, any stride) and activations it has repacked once per
// forward into the unit's pair-interleaved ("VNNI") layout: tile row kk holds, for each of
// 16 tokens, the bf16 pair (x[t][2kk], x[t][2kk+1]). The product is thus W . X^T: output
// rows are weight rows, columns are tokens.
// A's 16 rows for a run of steps: row r of step s (64 bytes) at p + s * step + r * stride.
// In place in a weight matrix: step 64, stride the row's bytes. Copied into a panel by
// load_rows: step 1024, stride 64 (each tile one contiguous KiB).
struct bf16_rows {
  const void* p;
  std::int64_t stride;
  std::int64_t step;
};
// Memory for a block call to bring into L2 while it computes: what later calls read first
// (the next block's weight tiles, the next pass's activation tiles), which would otherwise
// arrive from memory at the tile loads' pace. Up to max_runs runs of consecutive 64-byte
// lines, each spread evenly over the call's steps.
struct l2_ahead {
  static constexpr int max_runs = 6;
  const char* p[max_runs] = {};
  std::int64_t lines[max_runs] = {};
  int runs = 0;
  void add(const void* q, std::int64_t n) {
    if (!q || n <= 0 || runs == max_runs) return;
    p[runs] = static_cast<const char*>(q);
    lines[runs++] = n;
  }
};
struct matrix_unit {
  const char* name = nullptr;  // "amx", "amx_emulated"; nullptr: no unit
  // Around a thread's blocks of one work item (tile configuration, then release).
  void (*begin)() = nullptr;
  void (*end)() = nullptr;
  // c[2 * ia + ib] (+)= A_ia . B_ib over `steps` steps of 32 k, for ia < na, ib < nb (1 or 2):
  // step s reads A_ia's 16 rows (bf16_rows) and B_ib's 1024-byte tile at b[ib] + 1024 s. Each c tile is 16 x 16 f32, row-major, 256 floats apart.
  void (*block)(const bf16_rows* a, int na, const void* const* b, int nb, std::int64_t steps, float* c,
                bool accumulate, const l2_ahead& ahead) = nullptr;
  // The same, for A rows read for the first time (from memory, not cache): may prefetch
  // them prefetch_steps ahead.
  void (*block_first)(const bf16_rows* a, int na, const void* const* b, int nb, std::int64_t steps, float* c,
                      bool accumulate, const l2_ahead& ahead) = nullptr;
  // The data movement around the products, vectorized where the unit's ISA allows:
  // pack: 16 token rows of k_len bf16 (a null row: zeros) into ceil(k_len / 32) consecutive
  // 1024-byte tiles at dst, zeros past k_len.
  void (*pack)(const std::uint16_t* const* rows, std::int64_t k_len, std::uint16_t* dst) = nullptr;
  // h = silu(g) * u for `rows` (<= 16) consecutive weight rows of 16 tokens (g, u: 16 x 16 f32
  // tiles), rounded to bf16 and stored as tile rows of pairs: row p (64 bytes at dst + 32 p)
  // holds, per token, (h[2p][t], h[2p + 1][t]); a missing odd row is 0.
  void (*silu_mul)(const float* g, const float* u, int rows, std::uint16_t* dst) = nullptr;
  // load_rows: `rows` (<= 16) weight rows, `stride` bytes apart, k in [0, k_len), into `steps`
  // panel tiles at dst (bf16_rows step 1024, stride 64); zeros past rows and past k_len.
  void (*load_rows)(const void* src, std::int64_t stride, int rows, std::int64_t k_len, std::int64_t steps,
                    std::uint16_t* dst) = nullptr;
  // y[t][n] = w[t] * c[n][t] for n < rows, t < tokens (c: a 16 x 16 f32 tile).
  void (*scale_out)(const float* c, int rows, int tokens, const float* w, float* const* y) = nullptr;
  // Software prefetch distance of the weight rows in block_first, in steps (0: none).
  int prefetch_steps = 0;
  // Elements of K per pass for items with several pairs of token tiles (0: the engine's k_block).
  std::int64_t pass_k = 0;
  // Copy every pass's weight rows into panels (load_rows) before the products, instead of
  // reading them in place: row strides of whole 4 KiB pages put all 16 rows of a tile in one
  // L1 set, and 16 short streams per tile are hard on the prefetchers.
  bool panels = true;
  // Copy the bf16 experts once at create into the unit's tile order (cpu_tile_weights.h) and
  // read every weight tile from that copy: one contiguous KiB per tile. Costs the copy's
  // memory and time, reported by describe.
  bool tile_weights = false;
};

struct kernel_table {
  const char* isa = nullptr;  // "avx512bf16", "avx512f", "avx2", "scalar"
  // The AMX units' down tiles write whole lines of y with streaming stores (option stream_y).
  bool stream_y = true;
  int tile_m = 1;             // preferred tile for many rows (registers allow M x N accumulators)
  int tile_n = 4;
  // tiles[a_type][b_type][M-1][N-1], a_type and b_type in {elem_f32, elem_bf16}
  tile_fn tiles[2][2][max_tile_m][max_tile_n] = {};
  // widen[type] for every type but elem_f32 (unused).
  widen_fn widen[elem_type_count] = {};
  // Widen bf16 activations to f32 once per item and K pass, then run f32 x weight tiles,
  // instead of converting them inside every tile (which the tile repeats per weight row).
  bool widen_activations = false;
  // Panel path: an item with at least this many rows widens its weight rows (and bf16
  // activations) into f32 panels once per K pass and runs the f32 x f32 tiles over them,
  // instead of converting inside every tile. 0: only FP8 weights take the panel path.
  int panel_min_rows = 0;
  int panel_tile_m = 1;  // f32 x f32 tile shape used on panels
  int panel_tile_n = 4;
  // Experts with at least unit_min_rows tokens (bf16 activations, bf16 weights) run on the
  // matrix unit when there is one.
  matrix_unit unit;
  // The most memory a copy of the experts made at create may take (bytes; -1: MemAvailable less
  // an eighth; copy_budget, cpu_tile_weights.h): past it the tile-ordered copy is not made (the
  // unit reads the weights in place) and quantize= is refused.
  std::int64_t copy_memory_limit = -1;
  int unit_min_rows = 0;
  // unit_min_rows and unit.pass_k as they would be without the tile-ordered copy: what a layer
  // takes when its copy does not fit in memory (options the caller set are kept in both).
  int in_place_unit_min_rows = 0;
  std::int64_t in_place_pass_k = 0;
  // Integer products on the online int8/int4 codes (cpu_int_dot.h), when int_dot is on:
  // vector tiles, and AMX INT8 for experts with at least int_unit_min_rows tokens.
  int_kernels ints;
  int int_unit_min_rows = 0;
};

void fill_scalar(kernel_table& t);
void fill_avx2(kernel_table& t);      // needs AVX2 + FMA
void fill_avx512(kernel_table& t);    // needs AVX-512 F/BW/VL
void fill_avx512bf16(kernel_table& t);  // AVX-512 F/BW/VL + BF16: bf16 x bf16 tiles use vdpbf16ps

void fill_amx(matrix_unit& u, int prefetch_steps, bool stream_y);  // needs AMX-TILE + AMX-BF16 and the OS's leave (cpu_has_amx)
void fill_amx_emulated(matrix_unit& u);  // the same contract in portable C++: tests the engine's AMX path anywhere

// Which of the above this CPU runs, best first. cpu_has_amx also asks Linux for the tile
// data state (arch_prctl ARCH_REQ_XCOMP_PERM); without that grant the first tile
// instruction would fault.
bool cpu_has_amx();
bool cpu_has_avx512bf16();
bool cpu_has_avx512();
bool cpu_has_avx2();  // AVX2 + FMA + F16C

}  // namespace moereg::cpu
