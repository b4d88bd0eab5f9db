// SPDX-License-Identifier: Apache-2.0
// model.h - open a checkpoint as a model: which family claims it, which layout it is
// stored in, its dimensions and tensors.
//
//   moereg::app::open_request req;
//   req.path = "Qwen3-30B-A3B";                      // a directory, .safetensors or .gguf
//   auto m = moereg::app::open_model(req);
//   if (!m) { std::cerr << m.error().message << "\n"; return 1; }
//   std::cout << m.value().family << " stored as " << m.value().layout << "\n";
//
// The family comes from config.json's model_type (or, without config.json, from a GGUF
// file's metadata or a plugin's native config file such as Mistral's params.json); the
// layout is detected from the tensor names and shapes. Plugins are searched in
// `plugin_paths`, then MOEREG_PLUGIN_PATH, then beside the library (<libdir>/moereg).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct open_request {
  std::string path;                       // a checkpoint directory, a .safetensors or a .gguf file
  std::string family;                     // a plugin name or model_type; empty: from the config
  std::string layout;                     // the stored layout; empty: detected
  std::vector<std::string> plugin_paths;  // searched first, in order
};

struct tensor_entry {
  std::string name;
  std::string dtype;                 // "BF16", "F8_E4M3", "Q4_K", ...
  std::vector<std::int64_t> shape;
  std::uint64_t bytes = 0;
};

struct model_info {
  std::string path;
  std::string family;                // the plugin that claims it ("qwen3_moe")
  std::string model_type;            // config.json's model_type
  std::string layout;                // the layout it is stored in ("hf", "transformers_v5", ...)
  std::vector<std::string> layouts;  // every layout of the family: what it converts to
  std::string config_json;           // the configuration, as JSON text
  std::string dims;                  // "E=128 H=2048 I=768", as the family reads them
  // layers: the MoE layers (decoder layers with routed experts; 2 of deepseek_v3's 3 when its
  // first layer is dense); experts E, experts_per_token K (0 when the family has none), hidden
  // H, intermediate I (each expert's).
  std::int64_t layers = 0, experts = 0, experts_per_token = 0, hidden = 0, intermediate = 0;
  std::vector<tensor_entry> tensors;  // in file order
  std::uint64_t total_bytes = 0;
};

MOEREG_API result<model_info> open_model(const open_request& request) noexcept;

}  // namespace moereg::app
