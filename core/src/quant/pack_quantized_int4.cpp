// SPDX-License-Identifier: Apache-2.0
#include "moereg/quant/pack_quantized_int4.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/quant/bf16_round.h"
#include "moereg/safetensors/tensor_info.h"

namespace moereg {

namespace {
std::string str(std::int64_t v) { return std::to_string(v); }
std::string vec(std::span<const std::int64_t> x) { return shape_string(std::vector<std::int64_t>(x.begin(), x.end())); }
}  // namespace

pack_quantized_config read_pack_quantized_config(const json::value& qc, std::string_view where_view) {
  std::string where(where_view);
  auto fail = [&](const std::string& field, const std::string& what) -> pack_quantized_config {
    throw error(where + ": quantization_config." + field + " " + what);
  };
  if (!qc.is_object()) return fail("", std::string("must be an object, found ") + json::kind_name(qc.kind()));
  const json::value* format = qc.find("format");
  if (!format || !format->is_string() || format->as_string() != "pack-quantized")
    return fail("format", "is " + json::describe(format) + ", expected \"pack-quantized\"");
  const json::value* groups = qc.find("config_groups");
  if (!groups || !groups->is_object() || groups->as_object().empty())
    return fail("config_groups", "is " + json::describe(groups) + ", expected an object with one group");
  if (groups->as_object().size() != 1)
    return fail("config_groups", "has " + str(static_cast<std::int64_t>(groups->as_object().size())) +
                                     " groups, expected 1 (mixed schemes are not supported)");
  const auto& [gname, group] = groups->as_object().front();
  std::string prefix = "config_groups." + gname + ".weights";
  const json::value* w = group.find("weights");
  if (!w || !w->is_object()) return fail(prefix, "is " + json::describe(w) + ", expected an object");
  const json::value* bits = w->find("num_bits");
  if (!bits || !bits->is_integer() || bits->as_int() != 4) return fail(prefix + ".num_bits", "is " + json::describe(bits) + ", expected 4");
  const json::value* type = w->find("type");
  if (!type || !type->is_string() || type->as_string() != "int") return fail(prefix + ".type", "is " + json::describe(type) + ", expected \"int\"");
  const json::value* sym = w->find("symmetric");
  if (!sym || !sym->is_bool() || !sym->as_bool())
    return fail(prefix + ".symmetric", "is " + json::describe(sym) + ": asymmetric int4 (zero points) is not supported, expected true");
  const json::value* act = w->find("actorder");
  if (act && !act->is_null() && !(act->is_string() && act->as_string() == "weight") && !(act->is_bool() && !act->as_bool()))
    return fail(prefix + ".actorder", "is " + json::describe(act) + ": act-order groups (weight_g_idx) are not supported, expected null");
  const json::value* strategy = w->find("strategy");
  pack_quantized_config c;
  if (strategy && strategy->is_string() && strategy->as_string() == "channel") return c;
  if (!strategy || !strategy->is_string() || strategy->as_string() != "group")
    return fail(prefix + ".strategy", "is " + json::describe(strategy) + ", expected \"group\" or \"channel\"");
  const json::value* gs = w->find("group_size");
  if (!gs || !gs->is_integer() || gs->as_int() <= 0) return fail(prefix + ".group_size", "is " + json::describe(gs) + ", expected > 0");
  c.group_size = gs->as_int();
  return c;
}

pack_quantized_shape check_pack_quantized_shapes(std::string_view tensor, std::span<const std::int64_t> p,
                                                 std::span<const std::int64_t> s, std::int64_t n, std::int64_t k,
                                                 std::int64_t group_size) {
  if (n <= 0 || k <= 0) throw error(std::string(tensor) + ": weight_shape [" + str(n) + ", " + str(k) + "], expected positive sizes");
  pack_quantized_shape r{n, k, group_size == 0 ? k : group_size};
  std::int64_t words = (k + 7) / 8, groups = (k + r.group - 1) / r.group;
  if (p.size() != 2 || p[0] != n || p[1] != words)
    throw error(std::string(tensor) + ": weight_packed shape " + vec(p) + ", expected [" + str(n) + ", " + str(words) +
                "] for weight_shape [" + str(n) + ", " + str(k) + "]");
  if (s.size() != 2 || s[0] != n || s[1] != groups)
    throw error(std::string(tensor) + ": weight_scale shape " + vec(s) + ", expected [" + str(n) + ", " + str(groups) +
                "] for K = " + str(k) + " in groups of " + str(r.group));
  return r;
}

void dequantize_pack_quantized_int4(const void* packed, std::span<const float> scales, pack_quantized_shape s,
                                    std::uint16_t* out) {
  const std::int64_t words = (s.k + 7) / 8, groups = (s.k + s.group - 1) / s.group;
  if (static_cast<std::int64_t>(scales.size()) != s.n * groups)
    throw error("pack-quantized dequantize: " + str(static_cast<std::int64_t>(scales.size())) + " scales given, expected " +
                str(s.n * groups));
  auto p = static_cast<const unsigned char*>(packed);
  std::uint16_t table[16];  // the group's 16 possible results, each rounded once
  for (std::int64_t n = 0; n < s.n; ++n) {
    for (std::int64_t g = 0; g < groups; ++g) {
      const double scale = static_cast<double>(scales[static_cast<std::size_t>(n * groups + g)]);
      for (int q = 0; q < 16; ++q) table[q] = f64_to_bf16(static_cast<double>(q - 8) * scale);
      for (std::int64_t k = g * s.group; k < std::min(s.k, (g + 1) * s.group); ++k) {
        std::uint32_t word;
        std::memcpy(&word, p + 4 * (n * words + k / 8), 4);
        out[n * s.k + k] = table[(word >> (4 * (k % 8))) & 15u];
      }
    }
  }
}

}  // namespace moereg
