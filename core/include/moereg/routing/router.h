// SPDX-License-Identifier: Apache-2.0
// router.h - top-k expert selection, computed by the core for every backend alike.
//
// One moereg_routing_params (filled from a family's plugin YAML) describes the whole
// variant: scoring, bias for selection only, group limiting, renormalisation, scaling.
// Given x [T, H] (F32 or BF16) it yields logits [T, E], ids [T, K] and weights [T, K].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moereg/abi/moereg_backend.h"

namespace moereg {

struct routing_result {
  std::int64_t tokens = 0;
  std::int64_t experts = 0;
  std::int64_t top_k = 0;
  std::vector<float> logits;         // [T, E]
  std::vector<std::int64_t> ids;     // [T, K], best selection score first
  std::vector<float> weights;        // [T, K], the weight of ids[t, k]
};

class router {
 public:
  // Validates the params (shapes, dtypes, group sizes); throws moereg::error naming `where`
  // and the offending field. The router weight is copied to f32 (E x H floats).
  explicit router(const moereg_routing_params& params, std::string where = "routing");

  std::int64_t experts() const { return experts_; }
  std::int64_t hidden() const { return hidden_; }
  std::int64_t top_k() const { return top_k_; }

  // x: host view [T, H], F32 or BF16, any strides. Fills every field of `out`.
  void route(const moereg_tensor_view& x, routing_result& out) const;

  // Selection only, from precomputed logits [T, E] (row-major) into ids/weights [T, K].
  void select(const float* logits, std::int64_t tokens, std::int64_t* ids, float* weights) const;

 private:
  std::string where_;
  std::int64_t experts_ = 0;
  std::int64_t hidden_ = 0;
  std::int64_t top_k_ = 0;
  int scoring_ = MOEREG_SCORING_SOFTMAX;
  bool logits_in_f32_ = true;
  std::int64_t n_group_ = 1;
  std::int64_t topk_group_ = 1;
  int group_score_ = MOEREG_GROUP_SCORE_NONE;
  bool renormalize_ = false;
  float renorm_eps_ = 0;
  float scale_ = 1;
  std::vector<float> weight_;  // [E, H]
  std::vector<float> bias_;    // [E] or empty
};

}  // namespace moereg
