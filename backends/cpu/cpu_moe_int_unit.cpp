// SPDX-License-Identifier: Apache-2.0
// The integer products on the matrix unit (AMX INT8 tdpbssd, or its portable model): W . X^T
// as the bf16 unit computes it (cpu_moe_unit.cpp), with int8 tiles of 64 elements a step.
// Once per forward each unit bucket's token tiles are packed from the quantized activation
// rows (cpu_moe_int.cpp) into B tiles (run_int_pack); each 16 int8 weight rows are read in place by the tile loads
// (at the row stride; rows of K not whole 64-chunks, and a matrix's last partial 16 rows, are
// copied into a panel first), int4 rows unpacked and recentred into the thread's A panels:
// 16 rows x one pass (never a copy of the layer). Each group's part of a pass is one run of tdpbssd into int32 tiles,
// then scaled once (ws x as) into the item's f32 sums.
#include <algorithm>

#include "cpu_moe.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {
namespace {

constexpr std::int64_t int_tile_rows = 16;
constexpr std::int64_t int_tile_bytes = 1024;
constexpr std::int64_t int_block_floats = 512;  // two 16 x 16 f32 tiles per (block, token tile)
// A pass of one pair of token tiles: up to 8192 elements (int32 sums of 127 x 127 x 8192 fit).
constexpr std::int64_t int_long_pass = 128;

}  // namespace

std::int64_t moe_engine::int_long_chunks() const {
  return std::min(int_long_pass, ceil_div(std::max(hidden_, h_stride_), int_chunk));
}

std::int64_t moe_engine::int_short_chunks() const {
  return std::min(int_long_chunks(), std::max<std::int64_t>(1, ceil_div(k_block_, int_chunk)));
}

std::int64_t moe_engine::int_pass_chunks(std::int64_t k_len, std::int64_t token_tiles) const {
  return std::min(ceil_div(k_len, int_chunk), token_tiles <= 2 ? int_long_chunks() : int_short_chunks());
}

// Two A panels of a long pass.
std::int64_t moe_engine::int_panel_bytes() const { return 2 * int_long_chunks() * int_tile_bytes; }

bool moe_engine::plan_int_pack() {
  int_tiles_ = 0;
  if (!kernels_.ints.unit.name) return false;
  for (std::size_t e = 0; e < static_cast<std::size_t>(num_experts_); ++e) {
    int_row_[e] = -1;
    if (!int_on_unit(e)) continue;
    int_row_[e] = int_tiles_ * int_tile_rows;
    const std::int64_t tiles = ceil_div(bucket_begin_[e + 1] - bucket_begin_[e], int_tile_rows);
    for (std::int64_t t = 0; t < tiles; ++t) int_tile_bucket_[static_cast<std::size_t>(int_tiles_ + t)] = static_cast<std::int32_t>(e);
    int_tiles_ += tiles;
  }
  return int_tiles_ > 0;
}

// One 16-token tile of a bucket's quantized x or h, every chunk of K (rows past the bucket: zeros).
void moe_engine::run_int_pack(void* self, std::int64_t tile, int) {
  auto* me = static_cast<moe_engine*>(self);
  const std::size_t e = static_cast<std::size_t>(me->int_tile_bucket_[static_cast<std::size_t>(tile)]);
  const std::int64_t tb = tile - me->int_row_[e] / int_tile_rows, begin = me->bucket_begin_[e], rows = me->bucket_begin_[e + 1] - begin;
  const act_rows& src = me->int_pack_h_ ? me->hq_ : me->xq_;
  const std::int8_t* r[int_tile_rows];
  for (std::int64_t t = 0; t < int_tile_rows; ++t) {
    const std::int64_t q = begin + tb * int_tile_rows + t;
    r[t] = tb * int_tile_rows + t >= rows ? nullptr : me->int_pack_h_ ? src.codes(q) : src.codes(me->row_token_[static_cast<std::size_t>(q)]);
  }
  std::int8_t* dst = (me->int_pack_h_ ? me->hiv_ : me->xiv_).data() + tile * src.chunks * int_tile_bytes;
  me->kernels_.ints.unit.pack(r, 0, src.chunks, dst);
}

void moe_engine::int_weight_scales(const float* first_row, std::int64_t scale_row, std::int64_t n0, std::int64_t n_rows,
                                   std::int64_t g, float* ws) const {
  for (std::int64_t m = 0; m < int_tile_rows; ++m) ws[m] = n0 + m < n_rows ? first_row[(n0 + m) * scale_row + g] : 0.0f;
}

namespace {

// The run of chunks [s, end) of a pass from chunk c0 that lies in one group.
std::int64_t group_end(std::int64_t c0, std::int64_t s, std::int64_t steps, std::int64_t group) {
  const std::int64_t g = (c0 + s) * int_chunk / group;
  return std::min(steps, ceil_div((g + 1) * group, int_chunk) - c0);
}

// 16 weight rows [n0, n0 + 16) of a matrix of n_rows rows of k codes, chunks [c0, c0 + steps),
// as A tiles: int8 rows in place when all 16 exist and k is whole chunks (tdpbssd loads them
// at the row stride; no copy), else copied or unpacked into the thread's panel.
int8_rows weight_tiles(const int_unit& u, const char* base, std::int64_t row_bytes, bool int4, std::int64_t n0,
                       std::int64_t n_rows, std::int64_t k, std::int64_t c0, std::int64_t steps, std::int8_t* panel) {
  if (!int4 && n0 + int_tile_rows <= n_rows && k % int_chunk == 0) return {base + n0 * row_bytes + c0 * int_chunk, row_bytes, int_chunk};
  u.load_rows(base + n0 * row_bytes, row_bytes, static_cast<int>(std::min(int_tile_rows, n_rows - n0)), int4, k, c0, steps, panel);
  return {panel, int_chunk, int_tile_bytes};
}

int8_rows at_step(const int8_rows& r, std::int64_t s) { return {static_cast<const char*>(r.p) + s * r.step, r.stride, r.step}; }

}  // namespace

void moe_engine::int_unit_gate_up(const item& it, int thread) {
  const int_unit& u = kernels_.ints.unit;
  const std::size_t e = static_cast<std::size_t>(it.expert);
  const expert& ex = experts_[e];
  const std::int64_t I = ex.inter, begin = bucket_begin_[e];
  const bool int4 = ex.w13_type == elem_int4;
  const std::int64_t tiles = ceil_div(it.row1 - it.row0, int_tile_rows), blocks = ceil_div(it.col1 - it.col0, int_tile_rows);
  float* acc = gu_acc_.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(acc_floats);
  std::int8_t* a0 = int_panel_.data() + static_cast<std::size_t>(thread * int_panel_bytes());
  std::int8_t* a1 = a0 + int_long_chunks() * int_tile_bytes;
  std::int32_t* ci = int_c_.data() + static_cast<std::size_t>(thread) * 1024;
  const std::int64_t chunks = ceil_div(hidden_, int_chunk), kc = int_pass_chunks(hidden_, tiles);
  // The item's token tiles, packed once per forward (run_int_pack): chunk c of tile ti at bp + (ti * xq_.chunks + c) KiB.
  const std::int8_t* bp = xiv_.data() + (int_row_[e] + it.row0) / int_tile_rows * xq_.chunks * int_tile_bytes;
  const std::int64_t bs = xq_.chunks;
  const float* up_scales = ex.w13_scale + I * ex.w13_scale_row;
  float wsg[16], wsu[16], as[16];
  u.begin();
  for (std::int64_t c0 = 0; c0 < chunks; c0 += kc) {
    const std::int64_t steps = std::min(kc, chunks - c0);
    for (std::int64_t j = 0; j < blocks; ++j) {
      const std::int64_t n0 = it.col0 + int_tile_rows * j;
      const int8_rows gate = weight_tiles(u, ex.w13, ex.w13_row, int4, n0, I, hidden_, c0, steps, a0);
      const int8_rows up = weight_tiles(u, ex.w13 + I * ex.w13_row, ex.w13_row, int4, n0, I, hidden_, c0, steps, a1);
      for (std::int64_t s = 0; s < steps;) {
        const std::int64_t s1 = group_end(c0, s, steps, int_group_), g = (c0 + s) * int_chunk / int_group_;
        int_weight_scales(ex.w13_scale, ex.w13_scale_row, n0, I, g, wsg);
        int_weight_scales(up_scales, ex.w13_scale_row, n0, I, g, wsu);
        const int8_rows a[2] = {at_step(gate, s), at_step(up, s)};
        for (std::int64_t p = 0; 2 * p < tiles; ++p) {
          const int nb = 2 * p + 1 < tiles ? 2 : 1;
          const void* b[2] = {bp + (2 * p * bs + c0 + s) * int_tile_bytes, bp + ((2 * p + 1) * bs + c0 + s) * int_tile_bytes};
          u.block(a, 2, b, nb, s1 - s, ci, false);
          for (int ib = 0; ib < nb; ++ib) {
            const std::int64_t ti = 2 * p + ib;
            for (std::int64_t t = 0; t < int_tile_rows; ++t) {
              const std::int64_t r = it.row0 + ti * int_tile_rows + t;
              as[t] = r < it.row1 ? xq_.scales(row_token_[static_cast<std::size_t>(begin + r)])[g] : 0.0f;
            }
            float* at = acc + (j * tiles + ti) * int_block_floats;
            const bool more = c0 > 0 || s > 0;
            u.scale_acc(ci + 256 * ib, wsg, as, at, more);
            u.scale_acc(ci + 256 * (2 + ib), wsu, as, at + 256, more);
          }
        }
        s = s1;
      }
    }
  }
  u.end();
  // h = silu(gate) * up, into the f32 rows the down projection's quantization reads.
  float* h[int_tile_rows];
  for (std::int64_t j = 0; j < blocks; ++j) {
    const std::int64_t n0 = it.col0 + int_tile_rows * j, nrow = std::min(int_tile_rows, I - n0);
    for (std::int64_t ti = 0; ti < tiles; ++ti) {
      const float* at = acc + (j * tiles + ti) * int_block_floats;
      const std::int64_t tokens = std::min(int_tile_rows, it.row1 - it.row0 - ti * int_tile_rows);
      for (std::int64_t t = 0; t < tokens; ++t) h[t] = hf_.data() + (begin + it.row0 + ti * int_tile_rows + t) * h_stride_ + n0;
      u.silu_out(at, at + 256, static_cast<int>(nrow), static_cast<int>(tokens), h);
    }
  }
}

void moe_engine::int_unit_down(const item& it, int thread) {
  const int_unit& u = kernels_.ints.unit;
  const std::size_t e = static_cast<std::size_t>(it.expert);
  const expert& ex = experts_[e];
  const std::int64_t I = ex.inter, begin = bucket_begin_[e];
  const bool int4 = ex.w2_type == elem_int4;
  const std::int64_t tiles = ceil_div(it.row1 - it.row0, int_tile_rows), blocks = ceil_div(it.col1 - it.col0, 2 * int_tile_rows);
  float* acc = gu_acc_.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(acc_floats);
  std::int8_t* a0 = int_panel_.data() + static_cast<std::size_t>(thread * int_panel_bytes());
  std::int8_t* a1 = a0 + int_long_chunks() * int_tile_bytes;
  std::int32_t* ci = int_c_.data() + static_cast<std::size_t>(thread) * 1024;
  const std::int64_t chunks = ceil_div(I, int_chunk), kc = int_pass_chunks(I, tiles);
  const std::int8_t* bp = hiv_.data() + (int_row_[e] + it.row0) / int_tile_rows * hq_.chunks * int_tile_bytes;
  const std::int64_t bs = hq_.chunks;
  float ws0[16], ws1[16], as[16];
  u.begin();
  for (std::int64_t c0 = 0; c0 < chunks; c0 += kc) {
    const std::int64_t steps = std::min(kc, chunks - c0);
    for (std::int64_t j = 0; j < blocks; ++j) {
      // A_0, A_1: two consecutive 16-row tiles of w2 (one at the item's end).
      const std::int64_t n0 = it.col0 + 2 * int_tile_rows * j;
      const int na = n0 + int_tile_rows < it.col1 ? 2 : 1;
      const int8_rows w0 = weight_tiles(u, ex.w2, ex.w2_row, int4, n0, hidden_, I, c0, steps, a0);
      const int8_rows w1 = na > 1 ? weight_tiles(u, ex.w2, ex.w2_row, int4, n0 + int_tile_rows, hidden_, I, c0, steps, a1) : w0;
      for (std::int64_t s = 0; s < steps;) {
        const std::int64_t s1 = group_end(c0, s, steps, int_group_), g = (c0 + s) * int_chunk / int_group_;
        int_weight_scales(ex.w2_scale, ex.w2_scale_row, n0, hidden_, g, ws0);
        int_weight_scales(ex.w2_scale, ex.w2_scale_row, n0 + int_tile_rows, hidden_, g, ws1);
        const int8_rows a[2] = {at_step(w0, s), at_step(w1, s)};
        for (std::int64_t p = 0; 2 * p < tiles; ++p) {
          const int nb = 2 * p + 1 < tiles ? 2 : 1;
          const void* b[2] = {bp + (2 * p * bs + c0 + s) * int_tile_bytes, bp + ((2 * p + 1) * bs + c0 + s) * int_tile_bytes};
          u.block(a, na, b, nb, s1 - s, ci, false);
          for (int ib = 0; ib < nb; ++ib) {
            const std::int64_t ti = 2 * p + ib;
            for (std::int64_t t = 0; t < int_tile_rows; ++t) {
              const std::int64_t r = it.row0 + ti * int_tile_rows + t;
              as[t] = r < it.row1 ? hq_.scales(begin + r)[g] : 0.0f;
            }
            float* at = acc + (j * tiles + ti) * int_block_floats;
            const bool more = c0 > 0 || s > 0;
            u.scale_acc(ci + 256 * ib, ws0, as, at, more);
            if (na > 1) u.scale_acc(ci + 256 * (2 + ib), ws1, as, at + 256, more);
          }
        }
        s = s1;
      }
    }
  }
  u.end();
  scale_down_tiles(it, begin, tiles, blocks, u.scale_out, [&](std::int64_t j, std::int64_t ti, std::int64_t ia) {
    return acc + (j * tiles + ti) * int_block_floats + ia * 256;
  });
}

}  // namespace moereg::cpu
