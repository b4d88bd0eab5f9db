// SPDX-License-Identifier: Apache-2.0
#include "lora_support.h"

#include <filesystem>
#include <fstream>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/safetensors/safetensors_writer.h"

namespace fs = std::filesystem;

namespace moereg::test {

lora_base lora_base_of(const std::string& base_dir) {
  // Only config.json is needed (a base may be nothing else).
  const std::string path = base_dir + "/config.json";
  json::value cfg = json::parse_file(path);
  const std::string mt = cfg.find("model_type")->as_string();
  lora_base b;
  b.spec = source_catalog().resolve(source_catalog().plugins_for(mt).at(0), mt);
  b.dims = read_dims(b.spec, cfg, path);
  if (const json::value* a = cfg.find("architectures"); a && a->is_array() && !a->as_array().empty())
    b.arch = a->as_array()[0].as_string();
  return b;
}

lora_adapter read_adapter(const std::string& dir, const lora_base& b, const std::string& peft_version) {
  lora_read_options o;
  o.peft_version = peft_version;
  o.base_architecture = b.arch;
  return read_lora_adapter(dir, b.spec, b.dims, o);
}

void convert_adapter(const std::string& in, const std::string& out, lora_form form, const lora_base& b,
                     const std::string& peft_version) {
  lora_adapter a = read_adapter(in, b, peft_version);
  lora_write_options o;
  o.to = form;
  write_lora_output(plan_lora_output(a, o), out);
}

void write_f32_safetensors(const std::string& path, const std::map<std::string, f32_tensor>& tensors) {
  std::vector<tensor_spec> specs;
  for (const auto& [n, t] : tensors) specs.push_back({n, dtype::F32, t.shape});
  sort_like_safetensors(specs);
  safetensors_writer w(path, specs);
  for (std::size_t i = 0; i < w.tensors().size(); ++i) {
    const auto& t = tensors.at(w.tensors()[i].name);
    w.write(i, 0, t.data.data(), t.data.size() * 4);
  }
  w.commit();
}

canonical_lora random_lora(std::int64_t E, std::int64_t H, std::int64_t I, int r, std::vector<int> layers, unsigned seed,
                           bool share_gate_up_A) {
  canonical_lora c;
  c.E = E;
  c.H = H;
  c.I = I;
  c.r = r;
  c.layers = layers;
  c.share_gate_up_A = share_gate_up_A;
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.5f);
  auto fill = [&](std::size_t k) {
    std::vector<float> v(k);
    for (auto& x : v) x = n(rng);
    return v;
  };
  for (int L : layers) {
    auto& A = c.A[L];
    auto& B = c.B[L];
    A.resize(static_cast<std::size_t>(E));
    B.resize(static_cast<std::size_t>(E));
    for (std::int64_t e = 0; e < E; ++e) {
      auto ue = static_cast<std::size_t>(e);
      A[ue][0] = fill(static_cast<std::size_t>(r * H));
      A[ue][1] = share_gate_up_A ? A[ue][0] : fill(static_cast<std::size_t>(r * H));
      A[ue][2] = fill(static_cast<std::size_t>(r * I));
      B[ue][0] = fill(static_cast<std::size_t>(I * r));
      B[ue][1] = fill(static_cast<std::size_t>(I * r));
      B[ue][2] = fill(static_cast<std::size_t>(H * r));
    }
  }
  return c;
}

void write_qwen3_moe_config(const std::string& dir, std::int64_t E, std::int64_t H, std::int64_t I, int layers) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"model_type\": \"qwen3_moe\", \"hidden_size\": " << H
                                      << ", \"moe_intermediate_size\": " << I << ", \"num_experts\": " << E
                                      << ", \"num_experts_per_tok\": 2, \"num_hidden_layers\": " << layers
                                      << ", \"decoder_sparse_step\": 1, \"mlp_only_layers\": [], \"intermediate_size\": " << 3 * H << "}\n";
}

std::string lora_config_json(int r, double alpha, bool param_wrapper, const std::string& peft_version) {
  std::string s = "{\"peft_type\": \"LORA\", \"r\": " + std::to_string(r) + ", \"lora_alpha\": " + std::to_string(alpha) +
                  ", \"bias\": \"none\", \"fan_in_fan_out\": false, \"use_dora\": false, \"rank_pattern\": {}, \"alpha_pattern\": {}, "
                  "\"auto_mapping\": {\"base_model_class\": \"Qwen3MoeForCausalLM\"}, ";
  if (param_wrapper)
    s += "\"target_modules\": [\"q_proj\"], \"target_parameters\": [\"mlp.experts.gate_up_proj\", \"mlp.experts.down_proj\"]";
  else
    s += "\"target_modules\": [\"down_proj\", \"gate_proj\", \"up_proj\"], \"target_parameters\": null";
  if (!peft_version.empty()) s += ", \"peft_version\": \"" + peft_version + "\"";
  return s + "}\n";
}

void write_param_wrapper(const std::string& dir, const canonical_lora& c, bool old, const std::string& peft_version) {
  if (!c.share_gate_up_A) throw error("write_param_wrapper: gate and up must share A");
  fs::create_directories(dir);
  std::map<std::string, f32_tensor> t;
  const std::int64_t E = c.E, r = c.r, H = c.H, I = c.I, rE = r * E;
  for (int L : c.layers) {
    std::string m = "base_model.model.model.layers." + std::to_string(L) + ".mlp.experts.";
    for (bool gate_up : {true, false}) {
      std::int64_t in = gate_up ? H : I, out = gate_up ? 2 * I : H;
      // Canonical A_e [r, in], B_e [out, r].
      auto A = [&](std::int64_t e, std::int64_t j, std::int64_t i) {
        return c.A.at(L)[static_cast<std::size_t>(e)][gate_up ? 0 : 2][static_cast<std::size_t>(j * in + i)];
      };
      auto B = [&](std::int64_t e, std::int64_t o, std::int64_t j) {
        if (!gate_up) return c.B.at(L)[static_cast<std::size_t>(e)][2][static_cast<std::size_t>(o * r + j)];
        return c.B.at(L)[static_cast<std::size_t>(e)][o < I ? 0 : 1][static_cast<std::size_t>((o % I) * r + j)];
      };
      f32_tensor TA, TB;
      if (!old) {
        TA.shape = {rE, in};
        TB.shape = {out, rE};
        TA.data.resize(static_cast<std::size_t>(rE * in));
        TB.data.resize(static_cast<std::size_t>(out * rE));
        for (std::int64_t e = 0; e < E; ++e)
          for (std::int64_t j = 0; j < r; ++j) {
            for (std::int64_t i = 0; i < in; ++i) TA.data[static_cast<std::size_t>((e * r + j) * in + i)] = A(e, j, i);
            for (std::int64_t o = 0; o < out; ++o) TB.data[static_cast<std::size_t>(o * rE + j * E + e)] = B(e, o, j);
          }
      } else {
        // PEFT <= 0.19.0: A_old [E*r, out] holds B_e^T, B_old [in, r*E] holds A_e^T.
        TA.shape = {rE, out};
        TB.shape = {in, rE};
        TA.data.resize(static_cast<std::size_t>(rE * out));
        TB.data.resize(static_cast<std::size_t>(in * rE));
        for (std::int64_t e = 0; e < E; ++e)
          for (std::int64_t j = 0; j < r; ++j) {
            for (std::int64_t o = 0; o < out; ++o) TA.data[static_cast<std::size_t>((e * r + j) * out + o)] = B(e, o, j);
            for (std::int64_t i = 0; i < in; ++i) TB.data[static_cast<std::size_t>(i * rE + j * E + e)] = A(e, j, i);
          }
      }
      std::string n = m + (gate_up ? "base_layer." : "");
      t[n + "lora_A.weight"] = std::move(TA);
      t[n + "lora_B.weight"] = std::move(TB);
    }
  }
  write_f32_safetensors(dir + "/adapter_model.safetensors", t);
  std::ofstream(dir + "/adapter_config.json") << lora_config_json(c.r, 2.0 * c.r, true, peft_version);
}

void write_per_expert(const std::string& dir, const canonical_lora& c, const std::string& peft_version) {
  fs::create_directories(dir);
  std::map<std::string, f32_tensor> t;
  const char* names[] = {"gate_proj", "up_proj", "down_proj"};
  for (int L : c.layers)
    for (std::int64_t e = 0; e < c.E; ++e)
      for (int p = 0; p < 3; ++p) {
        std::string m = "base_model.model.model.layers." + std::to_string(L) + ".mlp.experts." + std::to_string(e) + "." + names[p];
        std::int64_t in = p == 2 ? c.I : c.H, out = p == 2 ? c.H : c.I;
        auto ue = static_cast<std::size_t>(e);
        t[m + ".lora_A.weight"] = {{c.r, in}, c.A.at(L)[ue][static_cast<std::size_t>(p)]};
        t[m + ".lora_B.weight"] = {{out, c.r}, c.B.at(L)[ue][static_cast<std::size_t>(p)]};
      }
  write_f32_safetensors(dir + "/adapter_model.safetensors", t);
  std::ofstream(dir + "/adapter_config.json") << lora_config_json(c.r, 2.0 * c.r, false, peft_version);
}

}  // namespace moereg::test
