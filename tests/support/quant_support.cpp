// SPDX-License-Identifier: Apache-2.0
#include "quant_support.h"

#include <filesystem>
#include <fstream>

#include "moereg/safetensors/safetensors_writer.h"

namespace moereg::test {

json::value deepseek_config(int E, int H, int I, const json::value& quantization) {
  json::object c{{"architectures", json::value(json::array{json::value("DeepseekV3ForCausalLM")})},
                 {"model_type", json::value("deepseek_v3")},
                 {"hidden_size", json::value(H)},
                 {"moe_intermediate_size", json::value(I)},
                 {"intermediate_size", json::value(2 * I)},
                 {"n_routed_experts", json::value(E)},
                 {"num_experts_per_tok", json::value(2)},
                 {"n_shared_experts", json::value(1)},
                 {"num_hidden_layers", json::value(2)},
                 {"first_k_dense_replace", json::value(1)},
                 {"n_group", json::value(1)},
                 {"topk_group", json::value(1)},
                 {"norm_topk_prob", json::value(true)},
                 {"routed_scaling_factor", json::value(2.5)},
                 {"dtype", json::value("bfloat16")}};
  if (!quantization.is_null()) c.emplace_back("quantization_config", quantization);
  return json::value(std::move(c));
}

void write_checkpoint(const std::string& dir, const json::value& config, const std::vector<tiny_tensor>& tensors) {
  std::filesystem::create_directories(dir);
  std::vector<tensor_spec> specs;
  for (const auto& t : tensors) specs.push_back({t.name, t.type, t.shape});
  sort_like_safetensors(specs);
  safetensors_writer w(dir + "/model.safetensors", specs, {{"format", "pt"}});
  for (std::size_t i = 0; i < w.tensors().size(); ++i)
    for (const auto& t : tensors)
      if (t.name == w.tensors()[i].name) {
        if (t.bytes.size() != w.tensors()[i].nbytes())
          throw std::runtime_error(t.name + ": " + std::to_string(t.bytes.size()) + " bytes for its shape's " +
                                   std::to_string(w.tensors()[i].nbytes()));
        w.write(i, 0, t.bytes.data(), t.bytes.size());
      }
  w.commit();
  std::ofstream(dir + "/config.json") << json::dump(config, 2);
}

std::vector<std::uint8_t> random_fp8(std::size_t n, std::mt19937& rng) {
  std::vector<std::uint8_t> v(n);
  std::uniform_int_distribution<int> d(0, 255);
  for (auto& b : v) {
    do b = static_cast<std::uint8_t>(d(rng));
    while ((b & 0x7F) == 0x7F);
  }
  return v;
}

}  // namespace moereg::test
