// SPDX-License-Identifier: Apache-2.0
// Integer products on the online int8/int4 codes (backend options quantize=int8|int4,
// int_dot; cpu_int_dot.h). Per forward: every token's x is quantized once to int8 per group
// of K (the weights' quantize_group: one scale per token and group, s = max|x| / 127, codes
// round(x / s)); the gate/up tiles multiply those codes by the weight codes in int32 and
// write h in f32; every (token, expert) row of h is then quantized the same way for the down
// projection. A group's int32 sum is scaled once, by ws x as. The codes are read where the
// quantization at create wrote them; int4 codes are unpacked in the tiles' registers.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu_moe.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {

void moe_engine::act_rows::size(std::int64_t rows, std::int64_t k_len, std::int64_t group) {
  k = k_len;
  chunks = ceil_div(k_len, int_chunk);
  row = chunks * int_chunk;
  groups = ceil_div(k_len, group);
  q.assign(static_cast<std::size_t>(rows * row), 0);
  scale.assign(static_cast<std::size_t>(rows * groups), 0.0f);
  sum.assign(static_cast<std::size_t>(rows * chunks), 0);
}

// With quantize=int8|int4 and int_dot auto or on: the integer path, where the groups allow.
void moe_engine::setup_int_dot(const online_quant& q) {
  const bool codes = q.bits == 8 || q.bits == 4;
  const std::int64_t widest = std::max(hidden_, experts_[0].inter);
  // Each group must be whole 64-element chunks (the tiles' step), unless one covers the row.
  const bool groups_ok = codes && (quant_.group % int_chunk == 0 || quant_.group >= widest);
  if (q.int_dot == 1) {
    if (!codes)
      throw std::invalid_argument(std::string("backend option int_dot=on: the integer products run on the codes of "
                                              "quantize=int8 or quantize=int4; found quantize=") +
                                  (q.ggml >= 0 ? "a ggml block type" : "none"));
    if (!groups_ok)
      throw std::invalid_argument("backend option int_dot=on: quantize_group=" + std::to_string(quant_.group) +
                                  ", expected 0 (one scale per row) or a multiple of 64 (the integer tiles' step)");
  }
  int_dot_ = q.int_dot != 0 && groups_ok;
  if (!int_dot_) return;
  int_group_ = quant_.group;
}

void moe_engine::size_int_buffers() {
  const std::int64_t rows = cap_tokens_ * (cap_k_ + (has_shared_ ? 1 : 0));
  xq_.size(cap_tokens_, hidden_, int_group_);
  hq_.size(rows, h_stride_, int_group_);
  hf_.assign(static_cast<std::size_t>(rows * h_stride_), 0.0f);
  int_unit_.assign(experts_.size(), 0);
  if (kernels_.ints.unit.name) {
    if (int_panel_.empty()) {
      int_panel_.assign(static_cast<std::size_t>(pool_->size() * int_panel_bytes()), 0);
      int_c_.assign(static_cast<std::size_t>(pool_->size()) * 1024, 0);
    }
    // Every unit bucket padded to whole 16-token tiles: at most 15 rows each.
    const std::size_t padded = static_cast<std::size_t>(rows) + 15 * std::min(static_cast<std::size_t>(rows), experts_.size());
    xiv_.assign(padded * static_cast<std::size_t>(xq_.row), 0);
    hiv_.assign(padded * static_cast<std::size_t>(hq_.row), 0);
    int_tile_bucket_.assign(padded / 16 + 1, 0);
    int_row_.assign(experts_.size(), -1);
  }
}

// The int tiles' ISA quantizes (cpu_int_quantize_*.cpp): the same codes and scales on all.
void moe_engine::quantize_acts(act_rows& dst, const char* src, std::int64_t src_row, int src_type, std::int64_t r,
                               std::int64_t src_r) const {
  kernels_.ints.quantize(src + src_r * src_row, src_type == elem_bf16, dst.k, int_group_, quant_.bits == 4,
                         dst.q.data() + r * dst.row, dst.scale.data() + r * dst.groups, dst.sum.data() + r * dst.chunks);
}

void moe_engine::run_quantize_x(void* self, std::int64_t i, int) {
  auto* me = static_cast<moe_engine*>(self);
  me->quantize_acts(me->xq_, me->x_, me->x_row_, me->x_type_, i, i);
}

void moe_engine::run_quantize_h(void* self, std::int64_t i, int) {
  auto* me = static_cast<moe_engine*>(self);
  me->quantize_acts(me->hq_, reinterpret_cast<const char*>(me->hf_.data()), me->h_stride_ * 4, elem_f32, i, i);
}

void moe_engine::int_gate_up(const item& it, int thread) {
  const expert& ex = experts_[static_cast<std::size_t>(it.expert)];
  const int_kernels& ik = kernels_.ints;
  const std::int64_t begin = bucket_begin_[static_cast<std::size_t>(it.expert)];
  const std::int64_t rows = it.row1 - it.row0, pairs = it.col1 - it.col0;
  const int tm = static_cast<int>(std::min<std::int64_t>(ik.tile_m, rows)), tn = tm >= ik.tile_m ? ik.tile_n : 8;
  const bool int4 = ex.w13_type == elem_int4;
  // One row tile reads each weight once: one pass keeps the streams long.
  const std::int64_t kp = rows <= tm ? hidden_ : std::min(hidden_, round_up(k_block_, int_chunk));
  float* acc = gu_acc_.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(acc_floats);
  const std::int64_t acc_row = 2 * pairs;
  const std::int8_t* a[4];
  const float* as[4];
  const std::int32_t* asum[4];
  const void* b[8];
  const float* bs[8];
  float c[32];
  for (std::int64_t k0 = 0; k0 < hidden_; k0 += kp) {
    for (std::int64_t j = it.col0; j < it.col1; j += tn) {
      const int np = static_cast<int>(std::min<std::int64_t>(tn, it.col1 - j));
      for (int half = 0; half < 2; ++half) {
        for (int i = 0; i < np; ++i) {
          const std::int64_t wr = half * ex.inter + j + i;
          b[i] = ex.w13 + wr * ex.w13_row;
          bs[i] = w13_scale_row(ex, wr);
        }
        for (std::int64_t r = it.row0; r < it.row1; r += tm) {
          const int mr = static_cast<int>(std::min<std::int64_t>(tm, it.row1 - r));
          for (int m = 0; m < mr; ++m) {
            const std::int64_t t = row_token_[static_cast<std::size_t>(begin + r + m)];
            a[m] = xq_.codes(t);
            as[m] = xq_.scales(t);
            asum[m] = xq_.sums(t);
          }
          const int_rows ir{a, as, asum, b, bs, k0, kp, hidden_, int_group_};
          ik.tiles[int4][mr - 1][np - 1](ir, c);
          for (int m = 0; m < mr; ++m) {
            float* ar = acc + (r - it.row0 + m) * acc_row + half * pairs + (j - it.col0);
            for (int i = 0; i < np; ++i) ar[i] = (k0 == 0 ? 0.0f : ar[i]) + c[m * np + i];
          }
        }
      }
    }
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* ar = acc + r * acc_row;
    float* h = hf_.data() + (begin + it.row0 + r) * h_stride_ + it.col0;
    for (std::int64_t i = 0; i < pairs; ++i) h[i] = ar[i] / (1.0f + std::exp(-ar[i])) * ar[pairs + i];
  }
}

void moe_engine::int_down(const item& it, int) {
  const expert& ex = experts_[static_cast<std::size_t>(it.expert)];
  const int_kernels& ik = kernels_.ints;
  const std::int64_t begin = bucket_begin_[static_cast<std::size_t>(it.expert)];
  const std::int64_t rows = it.row1 - it.row0, I = ex.inter;
  const int tm = static_cast<int>(std::min<std::int64_t>(ik.tile_m, rows)), tn = tm >= ik.tile_m ? ik.tile_n : 8;
  const bool int4 = ex.w2_type == elem_int4;
  const std::int64_t kp = rows <= tm ? I : std::min(I, round_up(k_block_, int_chunk));
  const std::int8_t* a[4];
  const float* as[4];
  const std::int32_t* asum[4];
  const void* b[8];
  const float* bs[8];
  float c[32];
  for (std::int64_t k0 = 0; k0 < I; k0 += kp) {
    for (std::int64_t n = it.col0; n < it.col1; n += tn) {
      const int nr = static_cast<int>(std::min<std::int64_t>(tn, it.col1 - n));
      for (int i = 0; i < nr; ++i) {
        b[i] = ex.w2 + (n + i) * ex.w2_row;
        bs[i] = ex.w2_scale + (n + i) * ex.w2_scale_row;
      }
      for (std::int64_t r = it.row0; r < it.row1; r += tm) {
        const int mr = static_cast<int>(std::min<std::int64_t>(tm, it.row1 - r));
        for (int m = 0; m < mr; ++m) {
          a[m] = hq_.codes(begin + r + m);
          as[m] = hq_.scales(begin + r + m);
          asum[m] = hq_.sums(begin + r + m);
        }
        const int_rows ir{a, as, asum, b, bs, k0, kp, I, int_group_};
        ik.tiles[int4][mr - 1][nr - 1](ir, c);
        for (int m = 0; m < mr; ++m) {
          const std::size_t q = static_cast<std::size_t>(begin + r + m);
          float* y = y_.data() + static_cast<std::size_t>(row_slot_[q]) * static_cast<std::size_t>(hidden_) + static_cast<std::size_t>(n);
          const float w = row_weight_[q];
          for (int i = 0; i < nr; ++i) y[i] = (k0 == 0 ? 0.0f : y[i]) + w * c[m * nr + i];
        }
      }
    }
  }
}

}  // namespace moereg::cpu
