// The MoE layer's experts on a matrix unit (AMX). Each product is computed transposed,
// W . X^T, so that the unit's row operand is the weight matrix exactly as it lies in the
// checkpoint (16 rows, 32 bf16 each, any stride) and only the activations, used by every
// weight row, are repacked: once per forward into pair-interleaved tiles (pack), and for
// the down projection straight from the gate/up tiles (unit_gate_up's epilogue).
//
// Work items are the vector path's (expert, token rows, output rows), with token rows in
// whole 32-token pairs of tiles and output rows in whole 16-row tiles. Sums over K run in
// passes of ceil32(k_block) elements, the four accumulator tiles of each block parked in the
// thread's gu_acc_ between passes, so a pass's weight rows (<= 128 x 1024 bf16) stay in L2
// while every token tile of the item goes past them.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_moe.h"

namespace moereg::cpu {
namespace {

constexpr std::int64_t tile_rows = 16;     // tokens per activation tile, weight rows per A tile
constexpr std::int64_t step_k = 32;        // bf16 per tile row
constexpr std::int64_t tile_elems = 512;   // bf16 in one 1 KiB activation tile
constexpr std::int64_t block_floats = 1024;  // four 16 x 16 accumulator tiles

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
std::int64_t round_up(std::int64_t a, std::int64_t b) { return ceil_div(a, b) * b; }

std::uint16_t to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  return static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace

bool moe_engine::plan_unit() {
  std::fill(unit_row_.begin(), unit_row_.end(), -1);
  unit_tiles_ = 0;
  if (!kernels_.unit.name || x_type_ != elem_bf16) return false;
  std::int64_t next = 0;
  for (std::size_t e = 0; e < experts_.size(); ++e) {
    const std::int64_t rows = bucket_begin_[e + 1] - bucket_begin_[e];
    const expert& ex = experts_[e];
    if (rows == 0 || rows < kernels_.unit_min_rows || ex.w13_type != elem_bf16 || ex.w2_type != elem_bf16) continue;
    unit_row_[e] = next;
    const std::int64_t tiles = ceil_div(rows, tile_rows);
    for (std::int64_t t = 0; t < tiles; ++t) unit_tile_bucket_[static_cast<std::size_t>(unit_tiles_ + t)] = static_cast<std::int32_t>(e);
    unit_tiles_ += tiles;
    next += tiles * tile_rows;
  }
  return unit_tiles_ > 0;
}

void moe_engine::run_pack(void* self, std::int64_t i, int) { static_cast<moe_engine*>(self)->pack(i); }

// One 16-token tile of a bucket's activations, all of K: word (ks, kk, t) of the tile holds
// x[t][32 ks + 2 kk .. + 1]; tokens past the bucket and k past H are zeros.
void moe_engine::pack(std::int64_t tile) {
  const std::size_t e = static_cast<std::size_t>(unit_tile_bucket_[static_cast<std::size_t>(tile)]);
  const std::int64_t first = unit_row_[e];  // the bucket's first padded row
  const std::int64_t tb = tile - first / tile_rows;  // tile within the bucket
  const std::int64_t begin = bucket_begin_[e], rows = bucket_begin_[e + 1] - begin;
  const std::int64_t ks_count = kh32_ / step_k;
  std::uint16_t* dst = xv_.data() + first * kh32_ + tb * ks_count * tile_elems;
  for (std::int64_t t = 0; t < tile_rows; ++t) {
    const std::int64_t r = tb * tile_rows + t;
    if (r >= rows) {
      for (std::int64_t ks = 0; ks < ks_count; ++ks)
        for (std::int64_t kk = 0; kk < 16; ++kk) {
          std::uint16_t* w = dst + ks * tile_elems + kk * 32 + t * 2;
          w[0] = w[1] = 0;
        }
      continue;
    }
    const auto* x = reinterpret_cast<const std::uint16_t*>(x_ + row_token_[static_cast<std::size_t>(begin + r)] * x_row_);
    for (std::int64_t k = 0; k < kh32_; k += 2) {
      std::uint16_t* w = dst + (k / step_k) * tile_elems + ((k % step_k) / 2) * 32 + t * 2;
      w[0] = k < hidden_ ? x[k] : 0;
      w[1] = k + 1 < hidden_ ? x[k + 1] : 0;
    }
  }
}

std::int64_t moe_engine::unit_pass(std::int64_t k_len) const { return std::min(round_up(k_block_, step_k), round_up(k_len, step_k)); }

bf16_rows moe_engine::unit_rows(const char* base, std::int64_t row_bytes, std::int64_t n0, std::int64_t n_rows,
                                std::int64_t k0, std::int64_t kl, int thread, int slot) const {
  if (n0 + tile_rows <= n_rows && kl % step_k == 0) return {base + n0 * row_bytes + k0 * 2, row_bytes};
  const std::int64_t width = round_up(kl, step_k);
  std::uint16_t* pad = unit_pad_.data() +
                       static_cast<std::size_t>((2 * thread + slot) * tile_rows * round_up(k_block_, step_k));
  for (std::int64_t r = 0; r < tile_rows; ++r) {
    std::uint16_t* d = pad + r * width;
    std::int64_t have = 0;
    if (n0 + r < n_rows) {
      std::memcpy(d, base + (n0 + r) * row_bytes + k0 * 2, static_cast<std::size_t>(kl) * 2);
      have = kl;
    }
    std::fill(d + have, d + width, std::uint16_t{0});
  }
  return {pad, width * 2};
}

void moe_engine::unit_gate_up(const item& it, int thread) {
  const matrix_unit& mu = kernels_.unit;
  const std::size_t e = static_cast<std::size_t>(it.expert);
  const expert& ex = experts_[e];
  const std::int64_t I = ex.inter;
  const std::int64_t ksh = kh32_ / step_k, ksi = round_up(I, step_k) / step_k;
  const std::uint16_t* xv = xv_.data() + unit_row_[e] * kh32_;
  std::uint16_t* hv = hv_.data() + unit_row_[e] * ki32_;
  const std::int64_t tile0 = it.row0 / tile_rows, tiles = ceil_div(it.row1 - it.row0, tile_rows);
  const std::int64_t pairs = ceil_div(tiles, 2), blocks = ceil_div(it.col1 - it.col0, tile_rows);
  float* acc = gu_acc_.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(acc_floats);
  const std::int64_t kp = unit_pass(hidden_);
  mu.begin();
  for (std::int64_t k0 = 0; k0 < hidden_; k0 += kp) {
    const std::int64_t kl = std::min(kp, hidden_ - k0), steps = ceil_div(kl, step_k);
    for (std::int64_t j = 0; j < blocks; ++j) {
      const std::int64_t n0 = it.col0 + tile_rows * j;
      // A_0: 16 gate rows, A_1: the matching up rows.
      const bf16_rows a[2] = {unit_rows(ex.w13, ex.w13_row, n0, I, k0, kl, thread, 0),
                              unit_rows(ex.w13 + I * ex.w13_row, ex.w13_row, n0, I, k0, kl, thread, 1)};
      for (std::int64_t p = 0; p < pairs; ++p) {
        const std::int64_t tb = tile0 + 2 * p;
        const void* b[2] = {xv + (tb * ksh + k0 / step_k) * tile_elems, xv + ((tb + 1) * ksh + k0 / step_k) * tile_elems};
        mu.block(a, 2, b, 2 * p + 1 < tiles ? 2 : 1, steps, acc + (j * pairs + p) * block_floats, k0 > 0);
      }
    }
  }
  mu.end();
  // h = silu(gate) * up as bf16, written where the down projection's tiles read it: tile
  // row kk of step ks holds, per token, h[t][32 ks + 2 kk .. + 1].
  for (std::int64_t j = 0; j < blocks; ++j) {
    const std::int64_t n0 = it.col0 + tile_rows * j;
    for (std::int64_t ti = 0; ti < tiles; ++ti) {
      const float* g = acc + (j * pairs + ti / 2) * block_floats + (ti % 2) * 256;
      const float* u = g + 512;
      std::uint16_t* dst = hv + (tile0 + ti) * ksi * tile_elems;
      for (std::int64_t r = 0; r < tile_rows && n0 + r < I; ++r) {
        const std::int64_t i = n0 + r;
        std::uint16_t* row = dst + (i / step_k) * tile_elems + ((i % step_k) / 2) * 32 + (i % 2);
        for (std::int64_t t = 0; t < tile_rows; ++t) {
          const float gv = g[r * 16 + t], uv = u[r * 16 + t];
          row[2 * t] = to_bf16(gv / (1.0f + std::exp(-gv)) * uv);
        }
      }
      // The last rows of h: zeros up to the whole step the down projection reads.
      if (n0 + tile_rows >= I)
        for (std::int64_t i = I; i < ksi * step_k; ++i) {
          std::uint16_t* row = dst + (i / step_k) * tile_elems + ((i % step_k) / 2) * 32 + (i % 2);
          for (std::int64_t t = 0; t < tile_rows; ++t) row[2 * t] = 0;
        }
    }
  }
}

void moe_engine::unit_down(const item& it, int thread) {
  const matrix_unit& mu = kernels_.unit;
  const std::size_t e = static_cast<std::size_t>(it.expert);
  const expert& ex = experts_[e];
  const std::int64_t I = ex.inter, begin = bucket_begin_[e];
  const std::int64_t ksi = round_up(I, step_k) / step_k;
  const std::uint16_t* hv = hv_.data() + unit_row_[e] * ki32_;
  const std::int64_t tile0 = it.row0 / tile_rows, tiles = ceil_div(it.row1 - it.row0, tile_rows);
  const std::int64_t pairs = ceil_div(tiles, 2), blocks = ceil_div(it.col1 - it.col0, 2 * tile_rows);
  float* acc = gu_acc_.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(acc_floats);
  const std::int64_t kp = unit_pass(I);
  mu.begin();
  for (std::int64_t k0 = 0; k0 < I; k0 += kp) {
    const std::int64_t kl = std::min(kp, I - k0), steps = ceil_div(kl, step_k);
    for (std::int64_t j = 0; j < blocks; ++j) {
      // A_0, A_1: two consecutive 16-row tiles of w2 (one at the item's end).
      const std::int64_t n0 = it.col0 + 2 * tile_rows * j;
      const int na = n0 + tile_rows < it.col1 ? 2 : 1;
      bf16_rows a[2] = {unit_rows(ex.w2, ex.w2_row, n0, hidden_, k0, kl, thread, 0), {}};
      if (na > 1) a[1] = unit_rows(ex.w2, ex.w2_row, n0 + tile_rows, hidden_, k0, kl, thread, 1);
      for (std::int64_t p = 0; p < pairs; ++p) {
        const std::int64_t tb = tile0 + 2 * p;
        const void* b[2] = {hv + (tb * ksi + k0 / step_k) * tile_elems, hv + ((tb + 1) * ksi + k0 / step_k) * tile_elems};
        mu.block(a, na, b, 2 * p + 1 < tiles ? 2 : 1, steps, acc + (j * pairs + p) * block_floats, k0 > 0);
      }
    }
  }
  mu.end();
  // y[slot][n] = routing weight x (W2 . h^T)[n][t]
  for (std::int64_t j = 0; j < blocks; ++j)
    for (std::int64_t ia = 0; ia < 2; ++ia) {
      const std::int64_t n0 = it.col0 + 2 * tile_rows * j + tile_rows * ia;
      if (n0 >= it.col1) break;
      const std::int64_t nr = std::min(tile_rows, it.col1 - n0);
      for (std::int64_t ti = 0; ti < tiles; ++ti) {
        const float* c = acc + (j * pairs + ti / 2) * block_floats + ia * 512 + (ti % 2) * 256;
        for (std::int64_t t = 0; t < tile_rows; ++t) {
          const std::int64_t r = it.row0 + ti * tile_rows + t;
          if (r >= it.row1) break;
          const std::size_t q = static_cast<std::size_t>(begin + r);
          float* y = y_.data() + static_cast<std::size_t>(row_slot_[q]) * static_cast<std::size_t>(hidden_) +
                     static_cast<std::size_t>(n0);
          const float w = row_weight_[q];
          for (std::int64_t n = 0; n < nr; ++n) y[n] = w * c[n * 16 + t];
        }
      }
    }
}

}  // namespace moereg::cpu
