// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_model_metadata.h"

#include <cmath>
#include <map>
#include <optional>

#include "moereg/base/error.h"

namespace moereg {

namespace {

constexpr std::uint64_t max_size = (1ull << 31) - 1;  // moereg and llama.cpp hold sizes in int32

const char* const sizes[] = {"block_count", "context_length", "embedding_length", "expert_count", "expert_used_count",
                             "expert_feed_forward_length", "expert_group_count", "expert_group_used_count", "vocab_size",
                             "rope.dimension_count", "attention.head_count", "attention.head_count_kv",
                             "attention.key_length", "attention.value_length", "attention.key_length_mla",
                             "attention.value_length_mla", "attention.kv_lora_rank"};
const char* const counts[] = {"feed_forward_length", "expert_shared_count", "expert_shared_feed_forward_length",
                              "leading_dense_block_count", "attention.q_lora_rank", "attention.sliding_window"};
const char* const positive_floats[] = {"attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base",
                                       "rope.scaling.factor", "expert_weights_scale"};

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

void check_gguf_model_metadata(const gguf_metadata& md, const std::string& arch, const std::string& where,
                               const std::function<std::string(const std::string& key)>& name) {
  if (arch.empty()) return;
  const std::string prefix = arch + ".";
  std::map<std::string, const gguf_value*> by_key;  // relative to the prefix
  for (const auto& [k, v] : md)
    if (k.rfind(prefix, 0) == 0) by_key.emplace(k.substr(prefix.size()), &v);
  auto fail = [&](const std::string& key, const std::string& what) { throw error(where + ": " + name(prefix + key) + what); };

  std::map<std::string, std::uint64_t> ints;
  auto integer = [&](const char* key, std::uint64_t lo) {
    auto it = by_key.find(key);
    if (it == by_key.end() || it->second->type() == gguf_type::array) return;
    const gguf_value& v = *it->second;
    std::string range = "an integer from " + std::to_string(lo) + " to 2^31-1";
    if (v.is_signed() && v.as_i64() < 0) fail(key, ": expected " + range + ", found " + std::to_string(v.as_i64()));
    auto u = v.to_uint();
    if (!u)
      fail(key, ": expected " + range + ", found " +
                    (v.is_float() ? number(v.as_f64()) + " (" + gguf_type_name(static_cast<std::uint32_t>(v.type())) + ")"
                                  : gguf_type_name(static_cast<std::uint32_t>(v.type()))));
    if (*u < lo || *u > max_size) fail(key, ": expected " + range + ", found " + std::to_string(*u));
    ints[key] = *u;
  };
  for (const char* k : sizes) integer(k, 1);
  for (const char* k : counts) integer(k, 0);

  for (const auto& [k, v] : by_key)
    if (v->is_float() && !std::isfinite(v->as_f64())) fail(k, ": expected a finite number, found " + number(v->as_f64()));
  for (const char* k : positive_floats) {
    auto it = by_key.find(k);
    if (it == by_key.end() || it->second->type() == gguf_type::array) continue;
    const gguf_value& v = *it->second;
    if (!v.is_float() && !v.is_signed() && !v.is_unsigned())
      fail(k, ": expected a number (FLOAT32), found " + gguf_type_name(static_cast<std::uint32_t>(v.type())));
    double x = v.is_float() ? v.as_f64() : v.is_signed() ? static_cast<double>(v.as_i64()) : static_cast<double>(v.as_u64());
    if (!(x > 0)) fail(k, ": expected a number > 0, found " + number(x));
  }

  auto get = [&](const char* k) -> std::optional<std::uint64_t> {
    auto it = ints.find(k);
    return it == ints.end() ? std::nullopt : std::optional<std::uint64_t>(it->second);
  };
  auto at_most = [&](const char* small, const char* large, const char* why) {
    auto s = get(small), l = get(large);
    if (s && l && *s > *l)
      fail(small, " = " + std::to_string(*s) + " is more than " + name(prefix + large) + " = " + std::to_string(*l) + " (" + why + ")");
  };
  auto divides = [&](const char* d, const char* n, const char* why) {
    auto dv = get(d), nv = get(n);
    if (dv && nv && *nv % *dv != 0)
      fail(n, " = " + std::to_string(*nv) + " is not a multiple of " + name(prefix + d) + " = " + std::to_string(*dv) + " (" + why + ")");
  };
  at_most("expert_used_count", "expert_count", "a token cannot be routed to more experts than there are");
  at_most("expert_group_used_count", "expert_group_count", "a token cannot use more expert groups than there are");
  divides("expert_group_count", "expert_count", "the experts are split into equal groups");
  at_most("attention.head_count_kv", "attention.head_count", "each key/value head serves one or more query heads");
  divides("attention.head_count_kv", "attention.head_count", "query heads are shared equally by the key/value heads");
  at_most("attention.head_count", "embedding_length", "a head has at least one dimension");
  at_most("leading_dense_block_count", "block_count", "the dense blocks are among the blocks");
}

}  // namespace moereg
