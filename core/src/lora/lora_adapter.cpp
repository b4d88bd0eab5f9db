// SPDX-License-Identifier: Apache-2.0
// What an adapter is, apart from reading it (lora_adapter.h): form and orientation names,
// a pair's scale, the questions asked of a read adapter, PEFT versions, the local base.
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/lora/lora_adapter.h"

namespace fs = std::filesystem;

namespace moereg {

const char* lora_form_name(lora_form f) {
  switch (f) {
    case lora_form::peft_param_wrapper: return "peft_param_wrapper";
    case lora_form::peft_per_expert: return "peft_per_expert";
    case lora_form::nemo_grouped: return "nemo_grouped";
  }
  return "?";
}

std::optional<lora_form> parse_lora_form(const std::string& name) {
  for (lora_form f : {lora_form::peft_param_wrapper, lora_form::peft_per_expert, lora_form::nemo_grouped})
    if (name == lora_form_name(f)) return f;
  return std::nullopt;
}

const char* lora_orientation_name(lora_orientation o) {
  switch (o) {
    case lora_orientation::none: return "none";
    case lora_orientation::peft_0_19_1: return "peft>=0.19.1";
    case lora_orientation::peft_0_18: return "peft<=0.19.0";
  }
  return "?";
}

double lora_pair::scale() const { return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / rank; }

bool lora_adapter::gate_up_share_A() const {
  for (const auto& [layer, per_layer] : experts)
    for (const auto& ex : per_layer) {
      const auto& g = ex[0];
      const auto& u = ex[1];
      if (!g && !u) continue;
      if (!g || !u) return false;
      const matrix_view &a = g->A, &b = u->A;
      if (a.rows != b.rows || a.cols != b.cols || a.type != b.type) return false;
      if (a.source == b.source && a.offset == b.offset && a.row_stride == b.row_stride && a.col_stride == b.col_stride) continue;
      for (std::int64_t r = 0; r < a.rows; ++r)
        for (std::int64_t c = 0; c < a.cols; ++c)
          if (std::memcmp(a.at(r, c), b.at(r, c), a.element_size()) != 0) return false;
    }
  return true;
}

std::size_t lora_adapter::expert_pair_count() const {
  std::size_t n = 0;
  for (const auto& [layer, per_layer] : experts)
    for (const auto& ex : per_layer)
      for (const auto& p : ex) n += p.has_value();
  return n;
}

std::array<int, 3> parse_peft_version(const std::string& v, const std::string& where) {
  std::array<int, 3> out{0, 0, 0};
  std::size_t at = 0;
  for (int i = 0; i < 3 && at <= v.size(); ++i) {
    std::size_t end = at;
    while (end < v.size() && std::isdigit(static_cast<unsigned char>(v[end]))) ++end;
    if (end == at) {
      if (i == 0) throw error(where + ": '" + v + "' is not a PEFT version (expected e.g. 0.19.1)");
      break;
    }
    out[static_cast<std::size_t>(i)] = std::stoi(v.substr(at, end - at));
    if (end >= v.size() || v[end] != '.') break;
    at = end + 1;
  }
  return out;
}

void check_lora_adapter_dir(const std::string& dir) {
  if (!fs::is_directory(dir))
    throw error(dir + (fs::exists(dir) ? ": not a directory" : ": no such directory") +
                " (expected an adapter directory with adapter_config.json and adapter_model.safetensors)");
  const fs::path config = fs::path(dir) / "adapter_config.json", weights = fs::path(dir) / "adapter_model.safetensors";
  if (!fs::exists(config)) throw error(config.string() + ": missing (an adapter directory holds adapter_config.json)");
  if (fs::exists(weights)) return;
  if (fs::exists(fs::path(dir) / "adapter_model.bin"))
    throw error(weights.string() + ": missing; adapter_model.bin (pickle) is not read, save the adapter with safe_serialization=True");
  throw error(weights.string() + ": missing (an adapter directory holds adapter_model.safetensors)");
}

std::string lora_local_base(const std::string& adapter_dir) {
  json::value cfg;
  try {
    cfg = json::parse_file((fs::path(adapter_dir) / "adapter_config.json").string());
  } catch (const std::exception&) {
    return "";
  }
  const json::value* b = cfg.find("base_model_name_or_path");
  if (!b || !b->is_string() || b->as_string().empty()) return "";
  for (fs::path p : {fs::path(adapter_dir) / b->as_string(), fs::path(b->as_string())})
    if (fs::exists(p / "config.json")) return p.lexically_normal().string();
  return "";
}

}  // namespace moereg
