// SPDX-License-Identifier: Apache-2.0
#include "moereg/routing/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "moereg/base/error.h"
#include "moereg/tensor/dtype.h"

namespace moereg {
namespace {

bool is_float_type(std::int32_t t) {
  return t == MOEREG_DTYPE_F32 || t == MOEREG_DTYPE_BF16 || t == MOEREG_DTYPE_F16 || t == MOEREG_DTYPE_F64;
}

std::string type_name(std::int32_t t) {
  if (t < MOEREG_DTYPE_BOOL || t > MOEREG_DTYPE_U64) return "dtype #" + std::to_string(t);
  return std::string(dtype_name(static_cast<dtype>(t)));
}

// Element (i, j) of a rank-2 view (or i of a rank-1 view with j = 0) as float.
float element(const moereg_tensor_view& v, std::int64_t i, std::int64_t j) {
  std::int64_t off = i * v.strides[0] + (v.rank > 1 ? j * v.strides[1] : 0);
  return static_cast<float>(element_as_double(static_cast<dtype>(v.dtype), v.data, static_cast<std::size_t>(off)));
}

// Round a float to the nearest bf16 and back: what a bf16 matmul's output holds.
float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

}  // namespace

router::router(const moereg_routing_params& p, std::string where) : where_(std::move(where)) {
  auto fail = [&](const std::string& what) { throw error(where_ + ": " + what); };
  if (p.num_experts <= 0) fail("num_experts: expected > 0, found " + std::to_string(p.num_experts));
  experts_ = p.num_experts;
  if (p.top_k <= 0 || p.top_k > p.num_experts)
    fail("top_k: expected 1.." + std::to_string(p.num_experts) + ", found " + std::to_string(p.top_k));
  top_k_ = p.top_k;
  if (p.scoring != MOEREG_SCORING_SOFTMAX && p.scoring != MOEREG_SCORING_SIGMOID)
    fail("scoring: expected softmax (0) or sigmoid (1), found " + std::to_string(p.scoring));
  scoring_ = p.scoring;
  logits_in_f32_ = p.logits_in_f32 != 0;
  if (p.group_score < MOEREG_GROUP_SCORE_NONE || p.group_score > MOEREG_GROUP_SCORE_TOP2_SUM)
    fail("group_score: expected none (0), max (1) or top2_sum (2), found " + std::to_string(p.group_score));
  group_score_ = p.group_score;
  n_group_ = p.n_group <= 1 || group_score_ == MOEREG_GROUP_SCORE_NONE ? 1 : p.n_group;
  if (n_group_ > 1) {
    if (experts_ % n_group_ != 0)
      fail("n_group: expected a divisor of num_experts " + std::to_string(experts_) + ", found " +
           std::to_string(n_group_));
    if (p.topk_group <= 0 || p.topk_group > n_group_)
      fail("topk_group: expected 1.." + std::to_string(n_group_) + ", found " + std::to_string(p.topk_group));
    topk_group_ = p.topk_group;
    std::int64_t per = experts_ / n_group_;
    if (topk_group_ * per < top_k_)
      fail("topk_group: " + std::to_string(topk_group_) + " groups of " + std::to_string(per) +
           " experts hold fewer than top_k " + std::to_string(top_k_) + " experts");
    if (group_score_ == MOEREG_GROUP_SCORE_TOP2_SUM && per < 2)
      fail("group_score top2_sum: expected at least 2 experts per group, found " + std::to_string(per));
  }
  renormalize_ = p.renormalize != 0;
  renorm_eps_ = p.renorm_eps;
  scale_ = p.routed_scaling_factor == 0.0f ? 1.0f : p.routed_scaling_factor;

  const moereg_tensor_view& r = p.router;
  if (!r.data) fail("router: weight missing");
  if (r.memory != MOEREG_MEMORY_HOST) fail("router: expected host memory");
  if (r.rank != 2 || r.shape[0] != experts_)
    fail("router: expected shape [" + std::to_string(experts_) + ", H], found rank " + std::to_string(r.rank) +
         (r.rank >= 1 ? " with " + std::to_string(r.shape[0]) + " rows" : ""));
  if (!is_float_type(r.dtype)) fail("router: expected a float dtype (F32, BF16, F16), found " + type_name(r.dtype));
  hidden_ = r.shape[1];
  if (hidden_ <= 0) fail("router: expected H > 0");
  weight_.resize(static_cast<std::size_t>(experts_ * hidden_));
  for (std::int64_t e = 0; e < experts_; ++e)
    for (std::int64_t h = 0; h < hidden_; ++h) weight_[static_cast<std::size_t>(e * hidden_ + h)] = element(r, e, h);

  const moereg_tensor_view& b = p.router_bias;
  if (b.data) {
    if (b.memory != MOEREG_MEMORY_HOST) fail("router_bias: expected host memory");
    std::int64_t n = 1;
    for (int i = 0; i < b.rank; ++i) n *= b.shape[i];
    if (b.rank != 1 || n != experts_)
      fail("router_bias: expected shape [" + std::to_string(experts_) + "], found " + std::to_string(n) +
           " elements in rank " + std::to_string(b.rank));
    if (!is_float_type(b.dtype)) fail("router_bias: expected a float dtype, found " + type_name(b.dtype));
    bias_.resize(static_cast<std::size_t>(experts_));
    for (std::int64_t e = 0; e < experts_; ++e) bias_[static_cast<std::size_t>(e)] = element(b, e, 0);
  }
}

void router::route(const moereg_tensor_view& x, routing_result& out) const {
  if (!x.data || x.memory != MOEREG_MEMORY_HOST) throw error(where_ + ": input: expected host memory");
  if (x.dtype != MOEREG_DTYPE_F32 && x.dtype != MOEREG_DTYPE_BF16)
    throw error(where_ + ": input: expected F32 or BF16, found " + type_name(x.dtype));
  if (x.rank != 2 || x.shape[1] != hidden_)
    throw error(where_ + ": input: expected shape [T, " + std::to_string(hidden_) + "], found rank " +
                std::to_string(x.rank) + (x.rank == 2 ? " with " + std::to_string(x.shape[1]) + " columns" : ""));
  const std::int64_t T = x.shape[0];
  out.tokens = T;
  out.experts = experts_;
  out.top_k = top_k_;
  out.logits.assign(static_cast<std::size_t>(T * experts_), 0.0f);
  out.ids.assign(static_cast<std::size_t>(T * top_k_), 0);
  out.weights.assign(static_cast<std::size_t>(T * top_k_), 0.0f);

  // With BF16 activations and logits_in_f32 == 0 the matmul runs in bf16: products are
  // exact in f32 and summed in f32 by every BLAS, then the result is rounded to bf16.
  const bool bf16 = x.dtype == MOEREG_DTYPE_BF16;
  const bool round_logits = bf16 && !logits_in_f32_;
  std::vector<float> row(static_cast<std::size_t>(hidden_));
  for (std::int64_t t = 0; t < T; ++t) {
    const char* base = static_cast<const char*>(x.data);
    for (std::int64_t h = 0; h < hidden_; ++h) {
      std::int64_t off = t * x.strides[0] + h * x.strides[1];
      row[static_cast<std::size_t>(h)] =
          bf16 ? bf16_to_f32(reinterpret_cast<const std::uint16_t*>(base)[off]) : reinterpret_cast<const float*>(base)[off];
    }
    for (std::int64_t e = 0; e < experts_; ++e) {
      const float* w = weight_.data() + e * hidden_;
      // Four double accumulators: exact enough to match a float32 BLAS to ~1e-7 and
      // independent chains the compiler can pipeline.
      double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      std::int64_t h = 0;
      for (; h + 4 <= hidden_; h += 4) {
        a0 += static_cast<double>(row[static_cast<std::size_t>(h)]) * w[h];
        a1 += static_cast<double>(row[static_cast<std::size_t>(h + 1)]) * w[h + 1];
        a2 += static_cast<double>(row[static_cast<std::size_t>(h + 2)]) * w[h + 2];
        a3 += static_cast<double>(row[static_cast<std::size_t>(h + 3)]) * w[h + 3];
      }
      for (; h < hidden_; ++h) a0 += static_cast<double>(row[static_cast<std::size_t>(h)]) * w[h];
      float l = static_cast<float>((a0 + a1) + (a2 + a3));
      out.logits[static_cast<std::size_t>(t * experts_ + e)] = round_logits ? round_bf16(l) : l;
    }
  }
  select(out.logits.data(), T, out.ids.data(), out.weights.data());
}

void router::select(const float* logits, std::int64_t tokens, std::int64_t* ids, float* weights) const {
  const std::size_t E = static_cast<std::size_t>(experts_);
  const std::int64_t K = top_k_;
  std::vector<float> score(E), choice(E), group(static_cast<std::size_t>(n_group_));
  std::vector<std::int32_t> order(E), gorder(static_cast<std::size_t>(n_group_));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* l = logits + t * experts_;
    if (scoring_ == MOEREG_SCORING_SOFTMAX) {
      float m = *std::max_element(l, l + E);
      double sum = 0;
      for (std::size_t e = 0; e < E; ++e) sum += std::exp(static_cast<double>(l[e]) - m);
      for (std::size_t e = 0; e < E; ++e) score[e] = static_cast<float>(std::exp(static_cast<double>(l[e]) - m) / sum);
    } else {
      for (std::size_t e = 0; e < E; ++e) score[e] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(l[e]))));
    }
    // The correction bias steers the choice only; weights come from the unbiased scores.
    for (std::size_t e = 0; e < E; ++e) choice[e] = bias_.empty() ? score[e] : score[e] + bias_[e];
    if (n_group_ > 1) {
      const std::size_t per = E / static_cast<std::size_t>(n_group_);
      for (std::size_t g = 0; g < static_cast<std::size_t>(n_group_); ++g) {
        const float* c = choice.data() + g * per;
        if (group_score_ == MOEREG_GROUP_SCORE_MAX) {
          group[g] = *std::max_element(c, c + per);
        } else {
          float first = neg_inf, second = neg_inf;
          for (std::size_t i = 0; i < per; ++i) {
            if (c[i] > first) {
              second = first;
              first = c[i];
            } else if (c[i] > second) {
              second = c[i];
            }
          }
          group[g] = first + second;
        }
      }
      std::iota(gorder.begin(), gorder.end(), 0);
      std::stable_sort(gorder.begin(), gorder.end(), [&](std::int32_t a, std::int32_t b) { return group[a] > group[b]; });
      std::vector<char> keep(static_cast<std::size_t>(n_group_), 0);
      for (std::int64_t g = 0; g < topk_group_; ++g) keep[static_cast<std::size_t>(gorder[static_cast<std::size_t>(g)])] = 1;
      for (std::size_t e = 0; e < E; ++e)
        if (!keep[e / per]) choice[e] = neg_inf;
    }
    std::iota(order.begin(), order.end(), 0);
    // Ties go to the lower expert index (torch.topk promises no order among equals).
    std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](std::int32_t a, std::int32_t b) {
      return choice[static_cast<std::size_t>(a)] > choice[static_cast<std::size_t>(b)] ||
             (choice[static_cast<std::size_t>(a)] == choice[static_cast<std::size_t>(b)] && a < b);
    });
    double sum = 0;
    for (std::int64_t k = 0; k < K; ++k) sum += score[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])];
    for (std::int64_t k = 0; k < K; ++k) {
      std::int32_t e = order[static_cast<std::size_t>(k)];
      double w = score[static_cast<std::size_t>(e)];
      if (renormalize_) w = static_cast<float>(w) / static_cast<float>(sum + renorm_eps_);
      ids[t * K + k] = e;
      weights[t * K + k] = static_cast<float>(static_cast<float>(w) * scale_);
    }
  }
}

}  // namespace moereg
