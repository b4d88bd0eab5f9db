// SPDX-License-Identifier: Apache-2.0
// Hooks of the mistral plugin: params.json <-> config.json, and the per-head row order of
// wq/wk (plugins/common/rotary_qk_rows.h, shared with the mixtral plugin's .gguf layout).
// Compiled against the SDK headers only; yaml-cpp reads params.json (JSON is YAML).
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "moereg/abi/moereg_hooks.h"
#include "rotary_qk_rows.h"

namespace {

const moereg_host_api* host = nullptr;
const char* const hook_names[] = {"read_params", "write_params", "permute_qk", nullptr};

struct hook_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void emit(moereg_sink sink, const std::string& s) { sink.write(sink.context, s.data(), s.size()); }

// A small JSON writer for flat objects of numbers, strings, booleans and arrays.
class json_object {
 public:
  void number(const std::string& k, const YAML::Node& v) {
    if (v && v.IsScalar()) add(k, v.as<std::string>());
  }
  void raw(const std::string& k, const std::string& v) { add(k, v); }
  void string(const std::string& k, const std::string& v) { add(k, "\"" + v + "\""); }
  std::string str() const { return "{\n" + body_ + "\n}\n"; }

 private:
  void add(const std::string& k, const std::string& v) { body_ += (body_.empty() ? "  \"" : ",\n  \"") + k + "\": " + v; }
  std::string body_;
};

YAML::Node need(const YAML::Node& n, const char* key, const std::string& where) {
  if (!n[key]) throw hook_error(where + ": missing \"" + key + "\"");
  return n[key];
}

std::string read_params(const char* dir) {
  std::string path = (std::filesystem::path(dir) / "params.json").string();
  YAML::Node p;
  try {
    p = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw hook_error(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  YAML::Node moe = p["moe"];
  if (!moe) throw hook_error(path + ": no \"moe\" section, so this is not an MoE checkpoint (expected moe.num_experts)");
  bool large3 = moe["expert_hidden_dim"] || p["kv_lora_rank"];
  json_object c;
  c.number("hidden_size", need(p, "dim", path));
  c.number("num_hidden_layers", need(p, "n_layers", path));
  c.number("num_attention_heads", need(p, "n_heads", path));
  c.number("num_key_value_heads", p["n_kv_heads"] ? p["n_kv_heads"] : p["n_heads"]);
  c.number("head_dim", p["head_dim"]);
  c.number("vocab_size", p["vocab_size"]);
  c.number("rms_norm_eps", p["norm_eps"]);
  c.number("rope_theta", p["rope_theta"]);
  c.number("num_experts_per_tok", need(moe, "num_experts_per_tok", path + " moe"));
  c.string("hidden_act", "silu");
  c.raw("tie_word_embeddings", "false");
  if (!large3) {
    c.string("model_type", "mixtral");
    c.raw("architectures", "[\"MixtralForCausalLM\"]");
    c.number("intermediate_size", need(p, "hidden_dim", path));
    c.number("num_local_experts", need(moe, "num_experts", path + " moe"));
  } else {
    c.string("model_type", "deepseek_v3");
    c.raw("architectures", "[\"DeepseekV3ForCausalLM\"]");
    c.number("intermediate_size", p["hidden_dim"]);
    c.number("moe_intermediate_size", need(moe, "expert_hidden_dim", path + " moe"));
    c.number("n_routed_experts", need(moe, "num_experts", path + " moe"));
    c.number("n_shared_experts", moe["num_shared_experts"]);
    c.number("first_k_dense_replace", moe["first_k_dense_replace"]);
    c.number("moe_layer_freq", moe["route_every_n"]);
    c.number("routed_scaling_factor", moe["routed_scale"]);
    c.number("n_group", moe["num_expert_groups"]);
    c.number("topk_group", moe["num_expert_groups_per_tok"]);
    c.raw("norm_topk_prob", "true");
    c.string("scoring_func", "softmax");  // vLLM's reading of Mistral Large 3
    for (const char* k : {"q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"}) c.number(k, p[k]);
  }
  return c.str();
}

std::string write_params(const char* config_json) {
  YAML::Node c = YAML::Load(config_json);
  std::string type = c["model_type"] ? c["model_type"].as<std::string>() : "";
  json_object p, moe;
  p.number("dim", need(c, "hidden_size", "config.json"));
  p.number("n_layers", need(c, "num_hidden_layers", "config.json"));
  p.number("n_heads", need(c, "num_attention_heads", "config.json"));
  p.number("n_kv_heads", c["num_key_value_heads"]);
  p.number("head_dim", c["head_dim"]);
  p.number("vocab_size", c["vocab_size"]);
  p.number("norm_eps", c["rms_norm_eps"]);
  p.number("rope_theta", c["rope_theta"] ? c["rope_theta"] : (c["rope_parameters"] ? c["rope_parameters"]["rope_theta"] : YAML::Node()));
  moe.number("num_experts_per_tok", need(c, "num_experts_per_tok", "config.json"));
  if (type == "mixtral") {
    p.number("hidden_dim", need(c, "intermediate_size", "config.json"));
    moe.number("num_experts", c["num_local_experts"] ? c["num_local_experts"] : need(c, "num_experts", "config.json"));
  } else if (type == "deepseek_v3") {
    p.number("hidden_dim", c["intermediate_size"]);
    moe.number("num_experts", need(c, "n_routed_experts", "config.json"));
    moe.number("expert_hidden_dim", need(c, "moe_intermediate_size", "config.json"));
    moe.number("num_shared_experts", c["n_shared_experts"]);
    moe.number("first_k_dense_replace", c["first_k_dense_replace"]);
    moe.number("route_every_n", c["moe_layer_freq"]);
    moe.number("routed_scale", c["routed_scaling_factor"]);
    moe.number("num_expert_groups", c["n_group"]);
    moe.number("num_expert_groups_per_tok", c["topk_group"]);
    for (const char* k : {"q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"}) p.number(k, c[k]);
  } else {
    throw hook_error("config.json model_type '" + type + "': the mistral native format holds mixtral or deepseek_v3 models");
  }
  std::string m = moe.str();
  m.pop_back();  // trailing newline
  p.raw("moe", m);
  return p.str();
}

moereg_status* unknown(const char* hook) {
  return host->status_create(MOEREG_INVALID_ARGUMENT, (std::string("no hook named '") + (hook ? hook : "") + "'").c_str());
}

moereg_status* read_config(const char* hook, const char* dir, moereg_sink sink) noexcept {
  MOEREG_API_BEGIN
  if (std::strcmp(hook, "read_params") != 0) return unknown(hook);
  emit(sink, read_params(dir));
  return nullptr;
  MOEREG_API_END
}

moereg_status* write_config(const char* hook, const char* config_json, moereg_sink sink) noexcept {
  MOEREG_API_BEGIN
  if (std::strcmp(hook, "write_params") != 0) return unknown(hook);
  emit(sink, write_params(config_json));
  return nullptr;
  MOEREG_API_END
}

moereg_status* transform(const char* hook, int32_t direction, const char* key, const char* config_json,
                         const moereg_tensor_view* src, moereg_tensor_view* dst) noexcept {
  MOEREG_API_BEGIN
  if (std::strcmp(hook, "permute_qk") != 0) return unknown(hook);
  moereg_plugins::permute_qk(direction, key, config_json, src, dst);  // rotary_qk_rows.h
  return nullptr;
  MOEREG_API_END
}

const moereg_hooks_api table = {MOEREG_PLUGIN_API_VERSION, "mistral", "1.0.0", hook_names, read_config, write_config, transform};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_hooks_api* moereg_hooks_entry(const moereg_host_api* h) {
  if (!h || h->api_version < MOEREG_PLUGIN_API_MIN) return nullptr;
  host = h;
  return &table;
}
