// SPDX-License-Identifier: Apache-2.0
// cpu_moe_detail.h - small helpers the engine's files share: element sizes, bf16 rounding
// (as the tiles round: to nearest even, NaN kept quiet), integer rounding.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu_kernels.h"

namespace moereg::cpu {

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
inline std::int64_t round_up(std::int64_t a, std::int64_t b) { return ceil_div(a, b) * b; }
// The rows of each block when `rows` are cut into as few blocks of at most `cap` as possible,
// near-equal and in whole `quantum`s: 270 rows, cap 256, quantum 32 -> 160 (blocks of 160 and
// 110), not 256 + 14. Each row block of an item streams the item's weight columns once, so a
// thin last block streams them with almost no products to hide the bytes behind.
inline std::int64_t even_block(std::int64_t rows, std::int64_t cap, std::int64_t quantum) {
  if (rows <= cap) return cap;
  const std::int64_t even = round_up(ceil_div(rows, ceil_div(rows, cap)), quantum);
  return even < cap ? even : cap;
}

// GGUF storage the backend reads as U8 rows: ggml blocks, and F16 as blocks of one value.
inline bool ggml_block(int e) { return e >= elem_q8_0 && e <= elem_f16; }
// Values and bytes per ggml block (ggml's QK8_0, QK4_0, QK_K and block structs).
inline std::int64_t block_values(int e) { return e == elem_f16 ? 1 : e == elem_q4_k || e == elem_q6_k ? 256 : 32; }
inline std::int64_t block_bytes(int e) {
  return e == elem_f16 ? 2 : e == elem_q8_0 ? 34 : e == elem_q4_0 ? 18 : e == elem_q4_k ? 144 : 210;
}
// Bytes of one element; for the 4-bit codes, of one byte (two codes), and for ggml blocks of
// one byte: the units ABI strides count.
inline std::size_t elem_bytes(int e) {
  return e == elem_bf16 ? 2 : e == elem_fp8 || e == elem_int4 || e == elem_mxfp4 || e == elem_int8 || ggml_block(e) ? 1 : 4;
}
inline bool four_bit(int e) { return e == elem_int4 || e == elem_mxfp4; }
// Weights that come with scale views.
inline bool scaled(int e) { return e == elem_fp8 || e == elem_int8 || four_bit(e); }
// Weights that are always widened into panels: those with scales, and the ggml blocks.
inline bool panel_weights(int e) { return scaled(e) || ggml_block(e); }
// Bytes from a weight row's start to its element k (for ggml blocks, to the block holding it).
inline std::int64_t weight_offset(int e, std::int64_t k) {
  return four_bit(e) ? k / 2 : ggml_block(e) ? k / block_values(e) * block_bytes(e) : k * static_cast<std::int64_t>(elem_bytes(e));
}

inline float bf16_value(std::uint16_t v) {
  std::uint32_t bits = static_cast<std::uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline std::uint16_t to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  return static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace moereg::cpu
