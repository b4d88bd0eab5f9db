// SPDX-License-Identifier: Apache-2.0
#include "moereg/quant/gptq_int4.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/quant/bf16_round.h"
#include "moereg/safetensors/tensor_info.h"

namespace moereg {

namespace {
std::string str(std::int64_t v) { return std::to_string(v); }
std::string vec(std::span<const std::int64_t> x) { return shape_string(std::vector<std::int64_t>(x.begin(), x.end())); }

}  // namespace

gptq_config read_gptq_config(const json::value& qc, std::string_view where_view) {
  std::string where(where_view);
  auto fail = [&](const std::string& field, const std::string& what) -> gptq_config {
    throw error(where + ": quantization_config." + field + " " + what);
  };
  if (!qc.is_object()) return fail("", std::string("must be an object, found ") + json::kind_name(qc.kind()));
  const json::value* method = qc.find("quant_method");
  if (!method || !method->is_string() || method->as_string() != "gptq")
    return fail("quant_method", "is " + json::describe(method) + ", expected \"gptq\"");
  const json::value* bits = qc.find("bits");
  if (!bits || !bits->is_integer() || bits->as_int() != 4)
    return fail("bits", "is " + json::describe(bits) + ", expected 4 (only int4 GPTQ is supported)");
  const json::value* sym = qc.find("sym");
  if (sym && !(sym->is_bool() && sym->as_bool()))
    return fail("sym", "is " + json::describe(sym) + ": asymmetric GPTQ (per-group zero points) is not supported, expected true");
  const json::value* desc = qc.find("desc_act");
  if (desc && !(desc->is_bool() && !desc->as_bool()))
    return fail("desc_act", "is " + json::describe(desc) + ": act-order GPTQ (permuted groups) is not supported, expected false");
  gptq_config c;
  const json::value* g = qc.find("group_size");
  if (g) {
    if (!g->is_integer() || (g->as_int() != -1 && g->as_int() <= 0))
      return fail("group_size", "is " + json::describe(g) + ", expected a positive integer or -1");
    c.group_size = g->as_int();
  }
  return c;
}

gptq_shape check_gptq_shapes(std::string_view tensor, std::span<const std::int64_t> q, std::span<const std::int64_t> s,
                             std::int64_t group_size) {
  if (q.size() != 2 || q[0] <= 0 || q[1] <= 0)
    throw error(std::string(tensor) + ": GPTQ qweight shape " + vec(q) + ", expected [K/8, N]");
  gptq_shape r{q[0] * 8, q[1], group_size == -1 ? q[0] * 8 : group_size};
  if (r.group <= 0) throw error(std::string(tensor) + ": GPTQ group size " + str(group_size) + ", expected > 0 or -1");
  std::int64_t groups = (r.k + r.group - 1) / r.group;
  if (s.size() != 2 || s[0] != groups || s[1] != r.n)
    throw error(std::string(tensor) + ": GPTQ scales shape " + vec(s) + ", expected [" + str(groups) + ", " + str(r.n) +
                "] for K = " + str(r.k) + " in groups of " + str(r.group));
  return r;
}

void check_gptq_g_idx(std::string_view tensor, const void* g_idx, gptq_shape s) {
  auto p = static_cast<const unsigned char*>(g_idx);
  for (std::int64_t k = 0; k < s.k; ++k) {
    std::int32_t g;
    std::memcpy(&g, p + 4 * k, 4);
    if (g != k / s.group)
      throw error(std::string(tensor) + ": g_idx[" + str(k) + "] = " + str(g) + ", expected " + str(k / s.group) +
                  " (k / group_size): act-order GPTQ is not supported");
  }
}

void dequantize_gptq_int4(const void* qweight, std::span<const float> scales, gptq_shape s, std::uint16_t* out) {
  const std::int64_t groups = (s.k + s.group - 1) / s.group;
  if (static_cast<std::int64_t>(scales.size()) != groups * s.n)
    throw error("gptq dequantize: " + str(static_cast<std::int64_t>(scales.size())) + " scales given, expected " +
                str(groups * s.n));
  auto p = static_cast<const unsigned char*>(qweight);
  if (s.group % 8 == 0) {
    // Words never straddle groups: per group, each column's 16 possible results are rounded
    // once into a table (what the per-element path below computes, bit for bit).
    std::vector<std::uint16_t> table(static_cast<std::size_t>(s.n) * 16);
    for (std::int64_t g = 0; g < groups; ++g) {
      for (std::int64_t n = 0; n < s.n; ++n) {
        const double scale = static_cast<double>(scales[static_cast<std::size_t>(g * s.n + n)]);
        for (int q = 0; q < 16; ++q) table[static_cast<std::size_t>(n * 16 + q)] = f64_to_bf16(static_cast<double>(q - 8) * scale);
      }
      for (std::int64_t k8 = g * s.group / 8; k8 < std::min(s.k / 8, (g + 1) * s.group / 8); ++k8)
        for (std::int64_t n = 0; n < s.n; ++n) {
          std::uint32_t word;
          std::memcpy(&word, p + 4 * (k8 * s.n + n), 4);
          const std::uint16_t* t = table.data() + n * 16;
          std::uint16_t* o = out + n * s.k + k8 * 8;
          for (int j = 0; j < 8; ++j) o[j] = t[(word >> (4 * j)) & 15u];
        }
    }
    return;
  }
  for (std::int64_t k8 = 0; k8 < s.k / 8; ++k8) {
    for (std::int64_t n = 0; n < s.n; ++n) {
      std::uint32_t word;
      std::memcpy(&word, p + 4 * (k8 * s.n + n), 4);
      for (std::int64_t j = 0; j < 8; ++j) {
        std::int64_t k = k8 * 8 + j;
        int q = static_cast<int>((word >> (4 * j)) & 15u);
        double v = static_cast<double>(q - 8) * static_cast<double>(scales[static_cast<std::size_t>((k / s.group) * s.n + n)]);
        out[n * s.k + k] = f64_to_bf16(v);
      }
    }
  }
}

}  // namespace moereg
