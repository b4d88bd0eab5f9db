// SPDX-License-Identifier: Apache-2.0
// linear_attn_heads.h - the value-head order of Qwen3.5's linear attention (gated delta net)
// in llama.cpp's qwen35moe tensors, for the hook library's `v_head_order` and `ssm_a` hooks.
//
// With fewer key heads than value heads (nk < nv, r = nv / nk), transformers keeps the value
// heads grouped by their key head: [K0 v0..v(r-1), K1 v0..v(r-1), ...]. llama.cpp's converter
// (conversion/qwen.py _LinearAttentionVReorderBase._reorder_v_heads) stores them tiled, so that
// ggml's broadcasting repeat pairs them with the key heads: [K0 v0, K1 v0, ..., K0 v1, ...]:
//   ENCODE (transformers -> llama.cpp): head j*nk + g  <-  head g*r + j
//   DECODE (llama.cpp -> transformers): the inverse.
// Whole rows (or columns) move, so any dtype works and nothing is rounded. With nk == nv there
// is nothing to reorder, as in the converter.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#include "moereg/abi/moereg_hooks.h"

namespace qwen35_hooks {

struct hook_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The linear-attention sizes of the config (text_config of Qwen3_5MoeForConditionalGeneration,
// or the top level of a text-only config).
struct linear_attn_dims {
  long k_heads = 0, v_heads = 0, k_head_dim = 0, v_head_dim = 0;
  long key_dim() const { return k_heads * k_head_dim; }
};

inline linear_attn_dims read_linear_attn_dims(const std::string& key, const char* config_json) {
  YAML::Node c;
  try {
    c = YAML::Load(config_json ? config_json : "");
  } catch (const YAML::Exception& e) {
    throw hook_error(key + ": config is not JSON: " + e.msg);
  }
  const YAML::Node text = c["text_config"] && c["text_config"].IsMap() ? c["text_config"] : c;
  auto field = [&](const char* name) -> long {
    const YAML::Node v = text[name];
    if (!v || v.IsNull()) throw hook_error(key + ": config has no " + std::string(name) + " (text_config." + name + ")");
    long x = 0;
    try {
      x = v.as<long>();
    } catch (const YAML::Exception&) {
      throw hook_error(key + ": config " + std::string(name) + " is not an integer");
    }
    if (x <= 0) throw hook_error(key + ": config " + std::string(name) + " is " + std::to_string(x) + ", expected a positive integer");
    return x;
  };
  linear_attn_dims d;
  d.k_heads = field("linear_num_key_heads");
  d.v_heads = field("linear_num_value_heads");
  d.k_head_dim = field("linear_key_head_dim");
  d.v_head_dim = field("linear_value_head_dim");
  if (d.v_heads % d.k_heads != 0)
    throw hook_error(key + ": linear_num_value_heads " + std::to_string(d.v_heads) + " is not a multiple of linear_num_key_heads " +
                     std::to_string(d.k_heads));
  return d;
}

// Bytes per element of a moereg_dtype; throws for a value the ABI header does not know.
inline std::size_t element_size(int32_t dtype, const std::string& key) {
  if (const std::size_t n = moereg_dtype_size(dtype)) return n;
  throw hook_error(key + ": unknown dtype " + std::to_string(dtype));
}

inline void check_same_view(const std::string& key, const moereg_tensor_view* src, const moereg_tensor_view* dst) {
  if (src->rank < 1 || src->rank > MOEREG_MAX_RANK || src->rank != dst->rank || src->dtype != dst->dtype)
    throw hook_error(key + ": expected source and destination views of one shape, rank 1 or more");
  for (int32_t d = 0; d < src->rank; ++d)
    if (src->shape[d] != dst->shape[d]) throw hook_error(key + ": source and destination shapes differ");
}

// Which head of the layout a canonical head goes to (ENCODE) or comes from (DECODE):
// canonical (grouped) head g*r + j <-> llama.cpp (tiled) head j*nk + g.
inline long tiled_head(long grouped, long k_heads, long per_k) { return (grouped % per_k) * k_heads + grouped / per_k; }

// Reorders the value heads along axis 0 (rows) from row `first` on, each head `head_rows`
// rows; rows before `first` (the q and k parts of attn_qkv / ssm_conv1d) are copied as they are.
inline void reorder_rows(int32_t direction, const linear_attn_dims& d, long first, long head_rows, const std::string& key,
                         const moereg_tensor_view* src, moereg_tensor_view* dst) {
  check_same_view(key, src, dst);
  std::size_t row_bytes = element_size(src->dtype, key);
  for (int32_t i = 1; i < src->rank; ++i) row_bytes *= static_cast<std::size_t>(src->shape[i]);
  const long rows = static_cast<long>(src->shape[0]);
  if (rows != first + d.v_heads * head_rows)
    throw hook_error(key + ": " + std::to_string(rows) + " rows, expected " + std::to_string(first + d.v_heads * head_rows) + " (" +
                     (first ? std::to_string(first) + " query/key rows + " : std::string()) + std::to_string(d.v_heads) +
                     " value heads of " + std::to_string(head_rows) + ")");
  auto in = static_cast<const char*>(src->data);
  auto out = static_cast<char*>(dst->data);
  std::memcpy(out, in, static_cast<std::size_t>(first) * row_bytes);
  const long per_k = d.v_heads / d.k_heads;
  const std::size_t head_bytes = static_cast<std::size_t>(head_rows) * row_bytes;
  for (long g = 0; g < d.v_heads; ++g) {
    const long t = tiled_head(g, d.k_heads, per_k);
    const long from = direction == MOEREG_ENCODE ? g : t, to = direction == MOEREG_ENCODE ? t : g;
    std::memcpy(out + static_cast<std::size_t>(first) * row_bytes + static_cast<std::size_t>(to) * head_bytes,
                in + static_cast<std::size_t>(first) * row_bytes + static_cast<std::size_t>(from) * head_bytes, head_bytes);
  }
}

// Reorders the value heads along the last axis (ssm_out's input columns), each head
// `head_cols` columns.
inline void reorder_cols(int32_t direction, const linear_attn_dims& d, long head_cols, const std::string& key,
                         const moereg_tensor_view* src, moereg_tensor_view* dst) {
  check_same_view(key, src, dst);
  if (src->rank != 2) throw hook_error(key + ": expected a 2-dimensional [out, value heads x head dim] matrix");
  const std::size_t es = element_size(src->dtype, key);
  const long rows = static_cast<long>(src->shape[0]), cols = static_cast<long>(src->shape[1]);
  if (cols != d.v_heads * head_cols)
    throw hook_error(key + ": " + std::to_string(cols) + " columns, expected " + std::to_string(d.v_heads * head_cols) + " (" +
                     std::to_string(d.v_heads) + " value heads of " + std::to_string(head_cols) + ")");
  auto in = static_cast<const char*>(src->data);
  auto out = static_cast<char*>(dst->data);
  const long per_k = d.v_heads / d.k_heads;
  const std::size_t head_bytes = static_cast<std::size_t>(head_cols) * es, row_bytes = static_cast<std::size_t>(cols) * es;
  for (long r = 0; r < rows; ++r)
    for (long g = 0; g < d.v_heads; ++g) {
      const long t = tiled_head(g, d.k_heads, per_k);
      const long from = direction == MOEREG_ENCODE ? g : t, to = direction == MOEREG_ENCODE ? t : g;
      std::memcpy(out + static_cast<std::size_t>(r) * row_bytes + static_cast<std::size_t>(to) * head_bytes,
                  in + static_cast<std::size_t>(r) * row_bytes + static_cast<std::size_t>(from) * head_bytes, head_bytes);
    }
}

// The last name component before ".weight"/".bias" (llama.cpp's tensor kind): "blk.0.attn_qkv.weight" -> "attn_qkv".
inline std::string tensor_kind(const std::string& key) {
  std::string k = key;
  for (const char* suffix : {".weight", ".bias"})
    if (k.size() > std::strlen(suffix) && k.compare(k.size() - std::strlen(suffix), std::strlen(suffix), suffix) == 0) {
      k.resize(k.size() - std::strlen(suffix));
      break;
    }
  const std::size_t dot = k.rfind('.');
  return dot == std::string::npos ? k : k.substr(dot + 1);
}

// The v_head_order hook: which part of which axis holds value heads, by llama.cpp's tensor kind.
inline void v_head_order(int32_t direction, const std::string& key, const char* config_json, const moereg_tensor_view* src,
                         moereg_tensor_view* dst) {
  if (direction != MOEREG_DECODE && direction != MOEREG_ENCODE) throw hook_error(key + ": unknown direction " + std::to_string(direction));
  const linear_attn_dims d = read_linear_attn_dims(key, config_json);
  const std::string kind = tensor_kind(key);
  if (kind == "attn_qkv" || kind == "ssm_conv1d") reorder_rows(direction, d, 2 * d.key_dim(), d.v_head_dim, key, src, dst);
  else if (kind == "attn_gate") reorder_rows(direction, d, 0, d.v_head_dim, key, src, dst);
  else if (kind == "ssm_alpha" || kind == "ssm_beta" || kind == "ssm_dt" || kind == "ssm_a") reorder_rows(direction, d, 0, 1, key, src, dst);
  else if (kind == "ssm_out") reorder_cols(direction, d, d.v_head_dim, key, src, dst);
  else
    throw hook_error(key + ": v_head_order applies to attn_qkv, attn_gate, ssm_conv1d, ssm_alpha, ssm_beta, ssm_dt, ssm_a or ssm_out");
}

}  // namespace qwen35_hooks
