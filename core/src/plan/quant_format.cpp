// SPDX-License-Identifier: Apache-2.0
#include "moereg/plan/quant_format.h"

#include "moereg/base/error.h"
#include "moereg/quant/gptq_int4.h"
#include "moereg/quant/pack_quantized_int4.h"

namespace moereg {

std::int64_t quant_format::pack() const {
  switch (scheme) {
    case quant_scheme::mxfp4: return 2;
    case quant_scheme::gptq_int4:
    case quant_scheme::pack_int4: return 8;
    default: return 1;
  }
}

std::string quant_format::describe() const {
  std::string g = group > 0 ? "group " + std::to_string(group) : "one group per row";
  switch (scheme) {
    case quant_scheme::none: return "none";
    case quant_scheme::fp8: return "fp8 e4m3 (" + std::to_string(block) + "x" + std::to_string(block) + " blocks or per-channel, by scale shape)";
    case quant_scheme::mxfp4: return "mxfp4 (e2m1, ue8m0 scales, group 32)";
    case quant_scheme::gptq_int4: return "gptq int4 (symmetric, " + g + ")";
    case quant_scheme::pack_int4: return "compressed-tensors int4 (pack-quantized, symmetric, " + g + ")";
  }
  return "?";
}

scale_grid quant_format::group_grid_for(std::int64_t rows, std::int64_t cols) const {
  return group_grid(rows, cols, group > 0 ? group : cols);
}

namespace {

const quant_naming& naming_of(const family_spec& spec, const std::string& scheme) {
  auto it = spec.quantization.find(scheme);
  if (it == spec.quantization.end()) throw error(spec.manifest_path + ": no naming for quantization scheme '" + scheme + "'");
  return it->second;
}

}  // namespace

quant_format implicit_fp8_format(const family_spec& spec) {
  quant_format q;
  q.scheme = quant_scheme::fp8;
  q.method = "fp8";
  q.names = naming_of(spec, "fp8");
  return q;
}

quant_format read_quant_format(const family_spec& spec, const json::value& config, const std::string& where) {
  quant_format q;
  const json::value* qc = config.is_object() ? config.find("quantization_config") : nullptr;
  if (!qc || qc->is_null()) return q;
  auto fail = [&](const std::string& field, const std::string& what) -> quant_format {
    throw error(where + ": quantization_config" + (field.empty() ? "" : "." + field) + " " + what);
  };
  if (!qc->is_object()) return fail("", "is " + json::describe(qc) + ", expected an object");
  const json::value* m = qc->find("quant_method");
  if (!m || !m->is_string()) return fail("quant_method", "is " + json::describe(m) + ", expected a string");
  q.method = m->as_string();
  if (q.method == "fp8") {
    q.scheme = quant_scheme::fp8;
    q.names = naming_of(spec, "fp8");
    if (const json::value* b = qc->find("weight_block_size"); b && !b->is_null()) {
      const auto bad = [&] {
        return fail("weight_block_size", "is " + json::dump(*b) + ", expected [N, N] with N > 0 (square blocks)");
      };
      if (!b->is_array() || b->as_array().size() != 2) return bad();
      const auto& a = b->as_array();
      if (!a[0].is_integer() || !a[1].is_integer() || a[0].as_int() <= 0 || a[0].as_int() != a[1].as_int()) return bad();
      q.block = a[0].as_int();
    }
    return q;
  }
  if (q.method == "gptq") {
    gptq_config c = read_gptq_config(*qc, where);
    q.scheme = quant_scheme::gptq_int4;
    q.names = naming_of(spec, "gptq");
    q.group = c.group_size > 0 ? c.group_size : 0;
    const json::value* fmt = qc->find("checkpoint_format");
    std::string f = fmt && fmt->is_string() ? fmt->as_string() : "gptq";
    if (f != "gptq" && f != "gptq_v2")
      return fail("checkpoint_format", "is " + json::describe(fmt) + ", expected \"gptq\" or \"gptq_v2\"");
    // A symmetric 4-bit zero point is 8; v1 stores it minus one.
    q.zero_word = f == "gptq" ? 0x77777777 : static_cast<std::int32_t>(0x88888888u);
    return q;
  }
  if (q.method == "compressed-tensors") {
    pack_quantized_config c = read_pack_quantized_config(*qc, where);
    q.scheme = quant_scheme::pack_int4;
    q.names = naming_of(spec, "compressed");
    q.group = c.group_size;
    return q;
  }
  if (q.method == "mxfp4") {
    q.scheme = quant_scheme::mxfp4;
    q.names = naming_of(spec, "mxfp4");
    q.group = 32;
    return q;
  }
  return fail("quant_method", "is \"" + q.method + "\": not supported, expected \"fp8\", \"gptq\", \"compressed-tensors\" or \"mxfp4\"");
}

std::string apply_naming(const std::string& naming, const std::string& key) {
  if (naming.starts_with("{key}")) return key + naming.substr(5);
  if (naming.starts_with("{stem}")) {
    std::string stem = key.ends_with(".weight") ? key.substr(0, key.size() - 7) : key;
    return stem + naming.substr(6);
  }
  throw error("quantization naming '" + naming + "' does not start with {key} or {stem}");
}

std::optional<std::string> unapply_naming(const std::string& naming, const std::string& name) {
  bool stem = naming.starts_with("{stem}");
  std::string suffix = naming.substr(stem ? 6 : 5);
  if (name.size() <= suffix.size() || !name.ends_with(suffix)) return std::nullopt;
  std::string base = name.substr(0, name.size() - suffix.size());
  // {stem} stands for a key ending in ".weight"; keys without it (stacked "gate_up_proj") are
  // their own stem.
  return stem ? base + ".weight" : base;
}

}  // namespace moereg
