// SPDX-License-Identifier: Apache-2.0
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
#include <cstring>
#include <new>

#include "cpu_moe.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {
namespace {

constexpr std::int64_t tile_rows = 16;     // tokens per activation tile, weight rows per A tile
constexpr std::int64_t step_k = 32;        // bf16 per tile row
constexpr std::int64_t tile_elems = 512;   // bf16 in one 1 KiB activation tile
constexpr std::int64_t block_floats = 1024;  // four 16 x 16 accumulator tiles

// Where h[t][i] of one token tile lives (t = 0 here; token t is 2 t further): the bf16 pair
// (i even, i odd) of tile row (i % 32) / 2 in the step of i / 32.
std::int64_t h_offset(std::int64_t i) { return (i / step_k) * tile_elems + ((i % step_k) / 2) * 32 + (i % 2); }

}  // namespace

bool moe_engine::plan_unit() {
  std::fill(unit_row_.begin(), unit_row_.end(), -1);
  unit_tiles_ = 0;
  if (!kernels_.unit.name || x_type_ != elem_bf16) return false;
  for (std::size_t e = 0; e < experts_.size(); ++e) {
    const std::int64_t rows = bucket_begin_[e + 1] - bucket_begin_[e];
    const expert& ex = experts_[e];
    // bf16 weights, or quantized ones dequantized into bf16 panels per pass (f32 stays on the
    // vector tiles: the unit would round its weights).
    const bool ok13 = ex.w13_type == elem_bf16 || panel_weights(ex.w13_type), ok2 = ex.w2_type == elem_bf16 || panel_weights(ex.w2_type);
    if (rows == 0 || rows < kernels_.unit_min_rows || !ok13 || !ok2 || int_bucket(e)) continue;
    unit_row_[e] = unit_tiles_ * tile_rows;
    unit_tiles_ += ceil_div(rows, tile_rows);
  }
  if (unit_tiles_ == 0) return false;
  // Made at the first forward that uses the unit, for the most tiles T tokens can take.
  if (xv_.empty()) size_unit_buffers();
  for (std::size_t e = 0; e < experts_.size(); ++e)
    if (on_unit(e))
      for (std::int64_t t = unit_row_[e] / tile_rows; t < unit_row_[e] / tile_rows + ceil_div(bucket_begin_[e + 1] - bucket_begin_[e], tile_rows); ++t)
        unit_tile_bucket_[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(e);
  return true;
}

void moe_engine::run_pack(void* self, std::int64_t i, int) { static_cast<moe_engine*>(self)->pack(i); }

// One 16-token tile of a bucket's activations, all of K (tokens past the bucket are zeros).
void moe_engine::pack(std::int64_t tile) {
  const std::size_t e = static_cast<std::size_t>(unit_tile_bucket_[static_cast<std::size_t>(tile)]);
  const std::int64_t first = unit_row_[e];  // the bucket's first padded row
  const std::int64_t tb = tile - first / tile_rows;  // tile within the bucket
  const std::int64_t begin = bucket_begin_[e], rows = bucket_begin_[e + 1] - begin;
  const std::uint16_t* src[tile_rows];
  for (std::int64_t t = 0; t < tile_rows; ++t) {
    const std::int64_t r = tb * tile_rows + t;
    src[t] = r < rows ? reinterpret_cast<const std::uint16_t*>(x_ + row_token_[static_cast<std::size_t>(begin + r)] * x_row_)
                      : nullptr;
  }
  kernels_.unit.pack(src, hidden_, xv_.data() + first * kh32_ + tb * kh32_ * tile_rows);
}

// Passes of the unit's pass_k (else k_block), so a pass's weight rows stay in cache for every
// pair of token tiles; with a single pair (each weight row read once anyway) longer ones, for
// longer streams.
std::int64_t moe_engine::unit_pass(std::int64_t k_len, std::int64_t tile_pairs) const {
  const std::int64_t kb = round_up(kernels_.unit.pass_k > 0 ? kernels_.unit.pass_k : k_block_, step_k);
  const std::int64_t pass = tile_pairs <= 1 ? std::max<std::int64_t>(4096, kb) : kb;
  return std::min(round_up(k_len, step_k), pass);
}

std::int64_t moe_engine::max_pass() const {
  const std::int64_t kb = std::max(kernels_.unit.pass_k, k_block_);
  return std::min(std::max(kh32_, ki32_), std::max<std::int64_t>(4096, round_up(kb, step_k)));
}

void moe_engine::size_unit_buffers() {
  // Every non-empty bucket padded to whole 16-token tiles: at most 15 rows each.
  const std::size_t rows = static_cast<std::size_t>(cap_tokens_ * (cap_k_ + (has_shared_ ? 1 : 0)));
  const std::size_t padded = rows + 15 * std::min(rows, experts_.size());
  xv_.assign(padded * static_cast<std::size_t>(kh32_), 0);
  hv_.assign(padded * static_cast<std::size_t>(ki32_), 0);
  unit_tile_bucket_.assign(padded / tile_rows + 1, 0);
  // Panels serve weights read in place and quantized ones; with the tile-ordered copy every
  // bf16 unit expert has tiles.
  if (unit_panel_.empty() && (tile_memory_.bytes() == 0 || quantized_))
    unit_panel_.assign(static_cast<std::size_t>(pool_->size()) * 2 * tile_rows * static_cast<std::size_t>(max_pass()), 0);
  if (unit_widen_.empty() && quantized_)
    unit_widen_.assign(static_cast<std::size_t>(pool_->size()) * static_cast<std::size_t>(max_pass()), 0.0f);
}

bf16_rows moe_engine::unit_rows(const char* base, std::int64_t row_bytes, const std::uint16_t* tiles, std::int64_t k_steps,
                                std::int64_t n0, std::int64_t n_rows, std::int64_t k0, std::int64_t kl, int thread,
                                int slot) const {
  if (tiles) return {tile_at(tiles, k_steps, n0, k0), 64, 1024};
  const char* first = base + n0 * row_bytes + k0 * 2;
  if (!kernels_.unit.panels && n0 + tile_rows <= n_rows && kl % step_k == 0) return {first, row_bytes, 64};
  const std::int64_t steps = ceil_div(kl, step_k);
  std::uint16_t* panel = unit_panel_.data() + static_cast<std::size_t>((2 * thread + slot) * tile_rows * max_pass());
  kernels_.unit.load_rows(first, row_bytes, static_cast<int>(std::min(tile_rows, n_rows - n0)), kl, steps, panel);
  return {panel, 64, 1024};
}

bf16_rows moe_engine::unit_quant_rows(const char* base, std::int64_t row_bytes, int type, const float* const* scales,
                                      std::int64_t n0, std::int64_t n_rows, std::int64_t k0, std::int64_t kl, int thread,
                                      int slot) const {
  const std::int64_t steps = ceil_div(kl, step_k), rows = std::min(tile_rows, n_rows - n0);
  std::uint16_t* panel = unit_panel_.data() + static_cast<std::size_t>((2 * thread + slot) * tile_rows * max_pass());
  float* f = unit_widen_.data() + static_cast<std::size_t>(thread * max_pass());
  for (std::int64_t r = 0; r < tile_rows; ++r) {
    if (r < rows) kernels_.widen[type](base + (n0 + r) * row_bytes, k0, kl, scales[r], scale_b1_, f);
    for (std::int64_t st = 0; st < steps; ++st) {
      std::uint16_t* d = panel + st * tile_elems + r * step_k;
      for (std::int64_t c = 0; c < step_k; ++c) {
        const std::int64_t k = st * step_k + c;
        d[c] = r < rows && k < kl ? to_bf16(f[k]) : 0;
      }
    }
  }
  return {panel, 64, 1024};
}

bf16_rows moe_engine::unit_weight_rows(const expert& ex, int part, std::int64_t n0, std::int64_t k0, std::int64_t kl, int thread,
                                       int slot) const {
  const std::int64_t I = ex.inter;
  if (part < 2) {
    const char* base = ex.w13 + (part == 1 ? I * ex.w13_row : 0);
    if (panel_weights(ex.w13_type)) {
      const float* sc[tile_rows] = {};  // none for ggml blocks: their scales are inside
      for (std::int64_t r = 0; r < tile_rows && n0 + r < I && ex.w13_scale; ++r) sc[r] = w13_scale_row(ex, (part == 1 ? I : 0) + n0 + r);
      return unit_quant_rows(base, ex.w13_row, ex.w13_type, sc, n0, I, k0, kl, thread, slot);
    }
    const std::int64_t ksh = kh32_ / step_k;
    const std::uint16_t* tiles = ex.t13 ? ex.t13 + (part == 1 ? ceil_div(I, tile_rows) * ksh * tile_elems : 0) : nullptr;
    return unit_rows(base, ex.w13_row, tiles, ksh, n0, I, k0, kl, thread, slot);
  }
  if (panel_weights(ex.w2_type)) {
    const float* sc[tile_rows] = {};
    for (std::int64_t r = 0; r < tile_rows && n0 + r < hidden_ && ex.w2_scale; ++r) sc[r] = ex.w2_scale + ((n0 + r) / scale_b0_) * ex.w2_scale_row;
    return unit_quant_rows(ex.w2, ex.w2_row, ex.w2_type, sc, n0, hidden_, k0, kl, thread, slot);
  }
  return unit_rows(ex.w2, ex.w2_row, ex.t2, round_up(I, step_k) / step_k, n0, hidden_, k0, kl, thread, slot);
}

// The blocks of one A pair (na weight tiles) against every pair of the item's token tiles
// [tile0, tile0 + tiles) of the repacked activations bv (ks_count steps per tile), over the
// pass at k0; acc holds the pairs' accumulator blocks in order. The weight rows come from
// memory only in the first block; the others find them in cache.
// Each call also brings into L2 what later calls would otherwise wait for, spread over its
// steps: a slice of the next block's weight tiles; in the first pass's first block, the next
// pair's activation tiles; in the other blocks (or the only one), a slice of the next pass's
// activation tiles. Only an item's very first call starts cold.
void moe_engine::unit_blocks(const bf16_rows* a, int na, const std::uint16_t* bv, std::int64_t ks_count, std::int64_t tile0,
                             std::int64_t tiles, std::int64_t k0, std::int64_t steps, float* acc, const unit_ahead& ahead) const {
  const matrix_unit& mu = kernels_.unit;
  const std::int64_t pairs = ceil_div(tiles, 2), a_slice = ceil_div(ahead.a.steps * tile_rows, pairs);
  const std::int64_t first_b = ahead.blocks > 1 ? 1 : 0, region = ahead.steps_next * tile_rows;
  const std::int64_t b_total = ahead.k_next >= 0 ? tiles * region : 0, b_slice = ceil_div(b_total, (ahead.blocks - first_b) * pairs);
  auto b_tile = [&](std::int64_t tb, std::int64_t k) { return bv + (tb * ks_count + k / step_k) * tile_elems; };
  for (std::int64_t p = 0; p < pairs; ++p) {
    const std::int64_t tb = tile0 + 2 * p;
    const void* b[2] = {b_tile(tb, k0), b_tile(tb + 1, k0)};
    l2_ahead ah;
    if (pairs == 1) {
      mu.block_first(a, na, b, 2 * p + 1 < tiles ? 2 : 1, steps, acc + p * block_floats, k0 > 0, ah);
      continue;
    }
    for (const std::uint16_t* q : ahead.a.p) ah.add(q ? q + p * a_slice * 32 : nullptr, a_slice);
    if (k0 == 0 && ahead.block == 0)
      for (std::int64_t t = tb + 2; t < std::min(tb + 4, tile0 + tiles); ++t) ah.add(b_tile(t, 0), steps * tile_rows);
    if (b_total > 0 && ahead.block >= first_b) {
      std::int64_t l0 = ((ahead.block - first_b) * pairs + p) * b_slice;
      const std::int64_t l1 = std::min(l0 + b_slice, b_total);
      while (l0 < l1) {
        const std::int64_t r = l0 / region, off = l0 % region, n = std::min(l1 - l0, region - off);
        ah.add(b_tile(tile0 + r, ahead.k_next) + off * 32, n);
        l0 += n;
      }
    }
    (p == 0 ? mu.block_first : mu.block)(a, na, b, 2 * p + 1 < tiles ? 2 : 1, steps, acc + p * block_floats, k0 > 0, ah);
  }
}

moe_engine::unit_next moe_engine::unit_next_tiles(const expert& ex, bool down, std::int64_t n0, std::int64_t col1,
                                                  std::int64_t k0, std::int64_t kl) const {
  unit_next next;
  next.steps = ceil_div(kl, step_k);
  if (!down && ex.t13) {
    const std::int64_t ksh = kh32_ / step_k;
    next.p[0] = tile_at(ex.t13, ksh, n0, k0);
    next.p[1] = tile_at(ex.t13 + ceil_div(ex.inter, tile_rows) * ksh * tile_elems, ksh, n0, k0);
  } else if (down && ex.t2) {
    const std::int64_t ksi = round_up(ex.inter, step_k) / step_k;
    next.p[0] = tile_at(ex.t2, ksi, n0, k0);
    if (n0 + tile_rows < col1) next.p[1] = tile_at(ex.t2, ksi, n0 + tile_rows, k0);
  }
  return next;
}

// What block j of `blocks` (pass at k0 of kp, K = k_len) brings into L2 for the next: the
// block at n_next of this pass, or the item's first one in the next pass, and the next pass's
// activation tiles.
moe_engine::unit_ahead moe_engine::unit_plan_ahead(const expert& ex, bool down, const item& it, std::int64_t j,
                                                   std::int64_t blocks, std::int64_t n_next, std::int64_t k0,
                                                   std::int64_t kp, std::int64_t k_len) const {
  const bool last = j + 1 == blocks;
  const std::int64_t kn = last ? k0 + kp : k0;
  unit_ahead ahead;
  if (kn < k_len) ahead.a = unit_next_tiles(ex, down, last ? it.col0 : n_next, it.col1, kn, std::min(kp, k_len - kn));
  ahead.block = j;
  ahead.blocks = blocks;
  if (k0 + kp < k_len) {
    ahead.k_next = k0 + kp;
    ahead.steps_next = ceil_div(std::min(kp, k_len - k0 - kp), step_k);
  }
  return ahead;
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
  const std::int64_t kp = unit_pass(hidden_, pairs);
  mu.begin();
  for (std::int64_t k0 = 0; k0 < hidden_; k0 += kp) {
    const std::int64_t kl = std::min(kp, hidden_ - k0), steps = ceil_div(kl, step_k);
    for (std::int64_t j = 0; j < blocks; ++j) {
      const std::int64_t n0 = it.col0 + tile_rows * j;
      // A_0: 16 gate rows, A_1: the matching up rows.
      const bf16_rows a[2] = {unit_weight_rows(ex, 0, n0, k0, kl, thread, 0), unit_weight_rows(ex, 1, n0, k0, kl, thread, 1)};
      unit_blocks(a, 2, xv, ksh, tile0, tiles, k0, steps, acc + j * pairs * block_floats,
                  unit_plan_ahead(ex, false, it, j, blocks, n0 + tile_rows, k0, kp, hidden_));
    }
  }
  mu.end();
  // h = silu(gate) * up as bf16, written where the down projection's tiles read it: tile
  // row kk of step ks holds, per token, h[t][32 ks + 2 kk .. + 1].
  for (std::int64_t j = 0; j < blocks; ++j) {
    const std::int64_t n0 = it.col0 + tile_rows * j;
    for (std::int64_t ti = 0; ti < tiles; ++ti) {
      const float* g = acc + (j * pairs + ti / 2) * block_floats + (ti % 2) * 256;
      std::uint16_t* dst = hv + (tile0 + ti) * ksi * tile_elems;
      mu.silu_mul(g, g + 512, static_cast<int>(std::min(tile_rows, I - n0)), dst + h_offset(n0));
      // The last rows of h: zeros up to the whole step the down projection reads.
      if (n0 + tile_rows >= I)
        for (std::int64_t i = I; i < ksi * step_k; ++i)
          for (std::int64_t t = 0; t < tile_rows; ++t) dst[h_offset(i) + 2 * t] = 0;
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
  const std::int64_t kp = unit_pass(I, pairs);
  mu.begin();
  for (std::int64_t k0 = 0; k0 < I; k0 += kp) {
    const std::int64_t kl = std::min(kp, I - k0), steps = ceil_div(kl, step_k);
    for (std::int64_t j = 0; j < blocks; ++j) {
      // A_0, A_1: two consecutive 16-row tiles of w2 (one at the item's end).
      const std::int64_t n0 = it.col0 + 2 * tile_rows * j;
      const int na = n0 + tile_rows < it.col1 ? 2 : 1;
      bf16_rows a[2] = {unit_weight_rows(ex, 2, n0, k0, kl, thread, 0), {}};
      if (na > 1) a[1] = unit_weight_rows(ex, 2, n0 + tile_rows, k0, kl, thread, 1);
      unit_blocks(a, na, hv, ksi, tile0, tiles, k0, steps, acc + j * pairs * block_floats,
                  unit_plan_ahead(ex, true, it, j, blocks, n0 + 2 * tile_rows, k0, kp, I));
    }
  }
  mu.end();
  scale_down_tiles(it, begin, tiles, blocks, mu.scale_out, [&](std::int64_t j, std::int64_t ti, std::int64_t ia) {
    return acc + (j * pairs + ti / 2) * block_floats + ia * 512 + (ti % 2) * 256;
  });
}

void moe_engine::run_tile_job(void* self, std::int64_t i, int) {
  auto* me = static_cast<moe_engine*>(self);
  const tile_job& j = me->tile_jobs_[static_cast<std::size_t>(i)];
  me->kernels_.unit.load_rows(j.src, j.row_bytes, static_cast<int>(j.rows), j.k_len, j.steps, j.dst);
}

void moe_engine::make_tile_weights() {
  // Every expert the unit can take (bf16 weights); one job per 16-row tile, all K steps.
  auto tiles_of = [](std::int64_t rows, std::int64_t k_len) { return ceil_div(rows, tile_rows) * ceil_div(k_len, step_k); };
  std::int64_t total = 0;
  for (const expert& ex : experts_)
    if (ex.w13_type == elem_bf16 && ex.w2_type == elem_bf16)
      total += 2 * tiles_of(ex.inter, hidden_) + tiles_of(hidden_, ex.inter);
  if (total == 0) return;
  // No room for the copy: the unit reads the weights in place, with the in-place defaults.
  auto in_place = [&](std::string why) {
    tile_skipped_ = std::move(why);
    kernels_.unit.tile_weights = false;
    kernels_.unit_min_rows = kernels_.in_place_unit_min_rows;
    kernels_.unit.pass_k = kernels_.in_place_pass_k;
  };
  const std::int64_t bytes = total * tile_elems * 2;
  std::string source;
  const std::int64_t budget = copy_budget(kernels_.copy_memory_limit, &source);
  if (budget >= 0 && bytes > budget)
    return in_place("the tile-ordered copy needs " + std::to_string(bytes) + " bytes and " + source + " allows " +
                    std::to_string(budget));
  try {
    tile_memory_ = tile_memory(static_cast<std::size_t>(bytes));
  } catch (const std::bad_alloc&) {
    return in_place("mmap refused the tile-ordered copy's " + std::to_string(bytes) + " bytes");
  }
  std::uint16_t* dst = tile_memory_.data();
  tile_jobs_.clear();
  std::int64_t e = 0;
  auto add = [&](const char* src, std::int64_t row_bytes, std::int64_t rows, std::int64_t k_len) {
    const std::int64_t steps = ceil_div(k_len, step_k);
    for (std::int64_t n0 = 0; n0 < rows; n0 += tile_rows, dst += steps * tile_elems)
      tile_jobs_.push_back({e, src + n0 * row_bytes, row_bytes, std::min(tile_rows, rows - n0), k_len, steps, dst});
  };
  for (expert& ex : experts_) {
    e = &ex - experts_.data();
    if (ex.w13_type != elem_bf16 || ex.w2_type != elem_bf16) continue;
    ex.t13 = dst;
    add(ex.w13, ex.w13_row, ex.inter, hidden_);
    add(ex.w13 + ex.inter * ex.w13_row, ex.w13_row, ex.inter, hidden_);
    ex.t2 = dst;
    add(ex.w2, ex.w2_row, hidden_, ex.inter);
  }
  // Written by the threads of each expert's node: first touch places the copy there.
  run_by_node(static_cast<std::int64_t>(tile_jobs_.size()), &run_tile_job,
              [this](std::int64_t i) { return tile_jobs_[static_cast<std::size_t>(i)].expert; });
  tile_jobs_ = {};
}

}  // namespace moereg::cpu
