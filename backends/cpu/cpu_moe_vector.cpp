// SPDX-License-Identifier: Apache-2.0
// The MoE layer's experts on the vector tiles (cpu_kernels.h): for each work item, K passes
// over its weight rows (read in place, or widened into f32 panels: FP8 always) against its
// tokens' activations (read in place, or widened to f32 once per pass), gate and up as
// separate tiles whose sums meet in the thread's accumulators, then silu(gate) * up into h;
// the down projection the same way into the per-(token, k) rows of y.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_moe.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {
namespace {

// Prefetches (into L2) the K segment of the next weight tile's rows, a share per row tile of
// the current one, so the next tile's first row tile does not wait on DRAM: items with a
// few dozen rows are otherwise bound by the latency of starting each short weight stream.
// With a single row tile (T = 1) it stays off: the weight streams are long, the hardware
// prefetcher keeps up, and a burst of software prefetches only got in its way (measured).
class next_tile_prefetch {
 public:
  // rows consecutive weight rows from `first` (already offset to the pass), `stride` bytes
  // apart, `seg` bytes each; spread over `steps` calls of step().
  next_tile_prefetch(const char* first, std::int64_t stride, std::int64_t rows, std::int64_t seg, std::int64_t steps)
      : first_(first), stride_(stride), lines_per_row_((seg + 63) / 64), total_(first && steps > 1 ? rows * lines_per_row_ : 0),
        per_step_((total_ + steps - 1) / std::max<std::int64_t>(1, steps)) {}
  void step() {
    const std::int64_t end = std::min(total_, done_ + per_step_);
    for (; done_ < end; ++done_)
      __builtin_prefetch(first_ + (done_ / lines_per_row_) * stride_ + (done_ % lines_per_row_) * 64, 0, 2);
  }

 private:
  const char* first_;
  std::int64_t stride_, lines_per_row_, total_, per_step_, done_ = 0;
};

}  // namespace

bool moe_engine::use_panel(int weight_type, std::int64_t rows) const {
  return panel_weights(weight_type) || (kernels_.panel_min_rows > 0 && rows >= kernels_.panel_min_rows);
}

const float* moe_engine::w13_scale_row(const expert& ex, std::int64_t r) const {
  if (!ex.w13_scale) return nullptr;
  const std::int64_t s = r < ex.inter ? r / scale_b0_ : ceil_div(ex.inter, scale_b0_) + (r - ex.inter) / scale_b0_;
  return ex.w13_scale + s * ex.w13_scale_row;
}

const void* moe_engine::weight_slice(const char* row, int type, std::int64_t k0, std::int64_t kl, const float* scale_row,
                                     bool panel, float* dst) const {
  if (!panel) return row + weight_offset(type, k0);
  if (type == elem_f32) std::memcpy(dst, row + k0 * 4, static_cast<std::size_t>(kl) * 4);
  else kernels_.widen[type](row, k0, kl, scale_row, scale_b1_, dst);
  return dst;
}

std::int64_t moe_engine::pass_length(const item_plan& p, std::int64_t rows, std::int64_t k_len) const {
  // One tile of rows reads each weight once anyway: one pass keeps the weight streams long
  // (when the widened activations of the whole length fit the per-thread buffer).
  if (!p.b_panel && rows <= p.tm && (!p.a_widen || rows * k_len <= max_item_rows * panel_k_)) return k_len;
  // Widened rows live in buffers of panel_k_ floats per row.
  return std::min(p.b_panel || p.a_widen ? panel_k_ : k_block_, k_len);
}

moe_engine::item_plan moe_engine::plan_for(int weight_type, std::int64_t rows) const {
  item_plan p;
  p.b_panel = use_panel(weight_type, rows);
  p.a_widen = x_type_ == elem_bf16 && (p.b_panel || kernels_.widen_activations);
  const int full_m = p.b_panel ? kernels_.panel_tile_m : kernels_.tile_m;
  p.tm = static_cast<int>(std::min<std::int64_t>(full_m, rows));
  // Fewer rows than a full tile: as many weight rows as the registers then allow.
  p.tn = p.tm >= full_m ? (p.b_panel ? kernels_.panel_tile_n : kernels_.tile_n) : max_tile_n;
  p.a_type = p.a_widen ? elem_f32 : x_type_;
  p.b_type = p.b_panel ? elem_f32 : weight_type;
  return p;
}

void moe_engine::gate_up(const item& it, int thread) {
  const expert& ex = experts_[static_cast<std::size_t>(it.expert)];
  const std::int64_t begin = bucket_begin_[static_cast<std::size_t>(it.expert)];
  const std::int64_t rows = it.row1 - it.row0, pairs = it.col1 - it.col0;
  const item_plan p = plan_for(ex.w13_type, rows);
  const bool h_bf16 = x_type_ == elem_bf16;
  const std::int64_t a_elem = static_cast<std::int64_t>(elem_bytes(x_type_));
  const std::int64_t kp = pass_length(p, rows, hidden_);
  // acc row r: [gate sums of the item's pairs | up sums], kept across K passes.
  float* acc = gu_acc_.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(max_item_rows * 2 * max_item_pairs);
  float* pa = p.a_widen ? panel_a_.data() + static_cast<std::size_t>(thread * max_item_rows * panel_k_) : nullptr;
  float* pb = p.b_panel ? panel_b_.data() + static_cast<std::size_t>(thread * max_tile_n * panel_k_) : nullptr;
  const std::int64_t acc_row = 2 * pairs;
  const void* a[max_tile_m];
  const void* b[max_tile_n];
  float c[max_tile_m * max_tile_n];
  for (std::int64_t k0 = 0; k0 < hidden_; k0 += kp) {
    const std::int64_t kl = std::min(kp, hidden_ - k0);
    if (p.a_widen)  // the item's activations for this pass, widened once for all its weight rows
      for (std::int64_t r = 0; r < rows; ++r)
        kernels_.widen[elem_bf16](x_ + row_token_[static_cast<std::size_t>(begin + it.row0 + r)] * x_row_, k0, kl, nullptr,
                                  0, pa + r * kp);
    // Gate rows and up rows are separate tiles; their sums land in the two halves of acc.
    for (std::int64_t j = it.col0; j < it.col1; j += p.tn) {
      const int np = static_cast<int>(std::min<std::int64_t>(p.tn, it.col1 - j));
      for (int half = 0; half < 2; ++half) {
        // The next tile: these pairs' up rows, or the next pairs' gate rows.
        const std::int64_t next_row = half == 0 ? ex.inter + j : j + p.tn;
        const std::int64_t next_n = half == 0 ? np : std::min<std::int64_t>(p.tn, it.col1 - (j + p.tn));
        next_tile_prefetch prefetch(next_n > 0 ? ex.w13 + next_row * ex.w13_row + weight_offset(ex.w13_type, k0) : nullptr,
                                    ex.w13_row, next_n, weight_offset(ex.w13_type, kl + 1), (rows + p.tm - 1) / p.tm);
        for (int i = 0; i < np; ++i) {
          const std::int64_t wr = half * ex.inter + j + i;
          b[i] = weight_slice(ex.w13 + wr * ex.w13_row, ex.w13_type, k0, kl, p.b_panel ? w13_scale_row(ex, wr) : nullptr,
                              p.b_panel, pb + i * kp);
        }
        for (std::int64_t r = it.row0; r < it.row1; r += p.tm) {
          const int mr = static_cast<int>(std::min<std::int64_t>(p.tm, it.row1 - r));
          for (int m = 0; m < mr; ++m)
            a[m] = p.a_widen ? static_cast<const void*>(pa + (r - it.row0 + m) * kp)
                             : x_ + row_token_[static_cast<std::size_t>(begin + r + m)] * x_row_ + k0 * a_elem;
          prefetch.step();
          kernels_.tiles[p.a_type][p.b_type][mr - 1][np - 1](a, b, kl, c);
          for (int m = 0; m < mr; ++m) {
            float* ar = acc + (r - it.row0 + m) * acc_row + half * pairs + (j - it.col0);
            if (k0 == 0) {
              for (int i = 0; i < np; ++i) ar[i] = c[m * np + i];
            } else {
              for (int i = 0; i < np; ++i) ar[i] += c[m * np + i];
            }
          }
        }
      }
    }
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* ar = acc + r * acc_row;
    const std::size_t row = static_cast<std::size_t>((begin + it.row0 + r) * h_stride_ + it.col0);
    for (std::int64_t i = 0; i < pairs; ++i) {
      float g = ar[i], u = ar[pairs + i];
      float v = g / (1.0f + std::exp(-g)) * u;
      if (h_bf16) {
        reinterpret_cast<std::uint16_t*>(h_.data())[row + static_cast<std::size_t>(i)] = to_bf16(v);
      } else {
        h_[row + static_cast<std::size_t>(i)] = v;
      }
    }
  }
}

void moe_engine::down(const item& it, int thread) {
  const expert& ex = experts_[static_cast<std::size_t>(it.expert)];
  const std::int64_t begin = bucket_begin_[static_cast<std::size_t>(it.expert)];
  const std::int64_t rows = it.row1 - it.row0;
  const item_plan p = plan_for(ex.w2_type, rows);  // h has x's precision
  const std::int64_t h_elem = static_cast<std::int64_t>(elem_bytes(x_type_));
  const std::int64_t kp = pass_length(p, rows, ex.inter);
  const char* h = reinterpret_cast<const char*>(h_.data());
  float* pa = p.a_widen ? panel_a_.data() + static_cast<std::size_t>(thread * max_item_rows * panel_k_) : nullptr;
  float* pb = p.b_panel ? panel_b_.data() + static_cast<std::size_t>(thread * max_tile_n * panel_k_) : nullptr;
  const void* a[max_tile_m];
  const void* b[max_tile_n];
  float c[max_tile_m * max_tile_n];
  for (std::int64_t k0 = 0; k0 < ex.inter; k0 += kp) {
    const std::int64_t kl = std::min(kp, ex.inter - k0);
    if (p.a_widen)
      for (std::int64_t r = 0; r < rows; ++r)
        kernels_.widen[elem_bf16](h + (begin + it.row0 + r) * h_stride_ * h_elem, k0, kl, nullptr, 0, pa + r * kp);
    for (std::int64_t n = it.col0; n < it.col1; n += p.tn) {
      const int nr = static_cast<int>(std::min<std::int64_t>(p.tn, it.col1 - n));
      const std::int64_t next_n = std::min<std::int64_t>(p.tn, it.col1 - (n + p.tn));
      next_tile_prefetch prefetch(next_n > 0 ? ex.w2 + (n + p.tn) * ex.w2_row + weight_offset(ex.w2_type, k0) : nullptr,
                                  ex.w2_row, next_n, weight_offset(ex.w2_type, kl + 1), (rows + p.tm - 1) / p.tm);
      for (int i = 0; i < nr; ++i) {
        const float* srow = p.b_panel && ex.w2_scale ? ex.w2_scale + ((n + i) / scale_b0_) * ex.w2_scale_row : nullptr;
        b[i] = weight_slice(ex.w2 + (n + i) * ex.w2_row, ex.w2_type, k0, kl, srow, p.b_panel, pb + i * kp);
      }
      for (std::int64_t r = it.row0; r < it.row1; r += p.tm) {
        const int mr = static_cast<int>(std::min<std::int64_t>(p.tm, it.row1 - r));
        for (int m = 0; m < mr; ++m)
          a[m] = p.a_widen ? static_cast<const void*>(pa + (r - it.row0 + m) * kp) : h + ((begin + r + m) * h_stride_ + k0) * h_elem;
        prefetch.step();
        kernels_.tiles[p.a_type][p.b_type][mr - 1][nr - 1](a, b, kl, c);
        for (int m = 0; m < mr; ++m) {
          const std::size_t q = static_cast<std::size_t>(begin + r + m);
          float* y = y_.data() + static_cast<std::size_t>(row_slot_[q]) * static_cast<std::size_t>(hidden_) +
                     static_cast<std::size_t>(n);
          const float w = row_weight_[q];
          if (k0 == 0) {
            for (int i = 0; i < nr; ++i) y[i] = w * c[m * nr + i];
          } else {
            for (int i = 0; i < nr; ++i) y[i] += w * c[m * nr + i];
          }
        }
      }
    }
  }
}

}  // namespace moereg::cpu
