// SPDX-License-Identifier: Apache-2.0
// rotary_qk_rows.h - the per-head row order of the rotary query/key projections, shared by
// the hook libraries whose layouts store it the "native" way (a hook named permute_qk).
//
// transformers keeps each head's rotary pairs as two halves: rows j and head_dim/2 + j of a
// head rotate together. Meta's llama code, mistral-inference (wq/wk) and llama.cpp's `llama`
// architecture (attn_q/attn_k) keep them interleaved: rows 2j and 2j+1. transformers'
// converters permute native -> halves; llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute:
// reshape(n_head, 2, head_dim/2, ...).swapaxes(1, 2)) applies the inverse, with
// num_key_value_heads heads for k. So both native layouts share this one permutation:
//   DECODE (native -> transformers): row h*hd + k*hd/2 + j  <-  row h*hd + 2j + k
//   ENCODE (transformers -> native): the inverse.
// Whole rows move, so any row-major tensor whose axis 0 is the output rows works: 2-D weights,
// 1-D biases, and ggml blocks (opaque bytes per row).
//
// Use once per hook library, from the transform slot (needs yaml-cpp to read the config):
//   moereg_plugins::permute_qk(direction, key, config_json, src, dst);
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#include "moereg/abi/moereg_hooks.h"

namespace moereg_plugins {

struct qk_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bytes per element of a moereg_dtype; throws for a value the ABI header does not know.
inline std::size_t qk_element_size(int32_t dtype, const std::string& key) {
  if (const std::size_t n = moereg_dtype_size(dtype)) return n;
  throw qk_error(key + ": unknown dtype " + std::to_string(dtype));
}

// Whether `key` names a key projection (true) or a query projection (false), by a name
// component: wq/wk (mistral-inference) or attn_q/attn_k (llama.cpp). Anything else is refused,
// since guessing would silently use the wrong head count.
inline bool qk_is_key_projection(const std::string& key) {
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t end = key.find('.', start);
    if (end == std::string::npos) end = key.size();
    std::string part = key.substr(start, end - start);
    if (part == "wk" || part == "attn_k") return true;
    if (part == "wq" || part == "attn_q") return false;
    start = end + 1;
  }
  throw qk_error(key + ": permute_qk applies to query or key projections (a name component wq, wk, attn_q or attn_k)");
}

// Moves the rows of one head-major projection between the two orders (see the top).
// heads_from names where the head count came from, for the error message.
inline void permute_rotary_rows(int32_t direction, long heads, const std::string& key, const moereg_tensor_view* src,
                                moereg_tensor_view* dst, const std::string& heads_from = "") {
  if (direction != MOEREG_DECODE && direction != MOEREG_ENCODE) throw qk_error(key + ": unknown direction " + std::to_string(direction));
  if (src->rank < 1 || src->rank > MOEREG_MAX_RANK || src->rank != dst->rank || src->dtype != dst->dtype)
    throw qk_error(key + ": expected source and destination views of one shape, rank 1 or more");
  std::size_t row_bytes = qk_element_size(src->dtype, key);
  for (int32_t d = 1; d < src->rank; ++d) row_bytes *= static_cast<std::size_t>(src->shape[d]);
  for (int32_t d = 0; d < src->rank; ++d)
    if (src->shape[d] != dst->shape[d]) throw qk_error(key + ": source and destination shapes differ");
  const long rows = static_cast<long>(src->shape[0]);
  if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
    throw qk_error(key + ": " + std::to_string(rows) + " rows do not split into " + std::to_string(heads) +
                   " heads" + (heads_from.empty() ? "" : " (" + heads_from + ")") + " of even size");
  const long hd = rows / heads, half = hd / 2;
  auto in = static_cast<const char*>(src->data);
  auto out = static_cast<char*>(dst->data);
  for (long h = 0; h < heads; ++h)
    for (long j = 0; j < half; ++j)
      for (long k = 0; k < 2; ++k) {
        long native = h * hd + 2 * j + k, halves = h * hd + k * half + j;
        long from = direction == MOEREG_DECODE ? native : halves, to = direction == MOEREG_DECODE ? halves : native;
        std::memcpy(out + static_cast<std::size_t>(to) * row_bytes, in + static_cast<std::size_t>(from) * row_bytes, row_bytes);
      }
}

// The permute_qk hook: heads from the HF-style config (num_attention_heads for q;
// num_key_value_heads for k, num_attention_heads when the config has none).
inline void permute_qk(int32_t direction, const char* key, const char* config_json, const moereg_tensor_view* src,
                       moereg_tensor_view* dst) {
  const std::string name = key ? key : "";
  const bool is_k = qk_is_key_projection(name);
  YAML::Node c;
  try {
    c = YAML::Load(config_json ? config_json : "");
  } catch (const YAML::Exception& e) {
    throw qk_error(name + ": config is not JSON: " + e.msg);
  }
  const char* field = is_k && c["num_key_value_heads"] && !c["num_key_value_heads"].IsNull() ? "num_key_value_heads"
                                                                                              : "num_attention_heads";
  YAML::Node heads = c[field];
  if (!heads || heads.IsNull()) throw qk_error(name + ": config has no " + std::string(field) + " (the head count)");
  long n = 0;
  try {
    n = heads.as<long>();
  } catch (const YAML::Exception&) {
    throw qk_error(name + ": config " + std::string(field) + " is not an integer");
  }
  permute_rotary_rows(direction, n, name, src, dst, std::string("config ") + field);
}

}  // namespace moereg_plugins
