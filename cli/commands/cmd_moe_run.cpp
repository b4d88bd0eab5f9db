// SPDX-License-Identifier: Apache-2.0
// moereg moe run: the MoE block of one decoder layer, read from a checkpoint in whatever
// layout it is stored, routed as its family declares, on the backend chosen.
#include <iostream>

#include "api_result.h"
#include "command.h"
#include "moereg/app/moe.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/log.h"
#include "moereg/base/printable.h"
#include "moereg/base/units.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "option_values.h"
#include "plugin_options.h"

namespace moereg::cli {

int run_moe_run(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("moe run CKPT --layer L --input IN.safetensors --output OUT.safetensors [options]",
                   "Run the MoE block of decoder layer L of a checkpoint, in whatever layout it is stored (no\n"
                   "conversion step), with the routing its family declares. IN holds `input` [T, H] (F32 or\n"
                   "BF16). OUT gets `output` [T, H] F32, `topk_ids` [T, K] I64, `topk_weights` [T, K] F32 and\n"
                   "`router_logits` [T, E] F32. Prints which backend ran and why it was chosen.");
  p.options().add_options()("checkpoint", po::value<std::string>()->required(), "checkpoint directory")(
      "layer", po::value<std::string>()->required(), "decoder layer whose MoE block runs")(
      "input", po::value<std::string>()->required(), "safetensors file with `input` [T, H]")(
      "output", po::value<std::string>()->required(), "safetensors file to write")(
      "backend", po::value<std::string>()->default_value("auto"), "cpu, cuda, another installed backend, or auto (best probe score)")(
      "threads", po::value<std::string>()->default_value("0"), "CPU threads, 0 to 4096 (0 = all cores)")(
      "backend-option", po::value<std::vector<std::string>>()->composing(),
      "key=value, repeatable: a tuning option of the backend (docs/backends.md lists the cpu backend's, docs/cuda.md the cuda backend's: tiles, cublas, graphs, f8_activations)")(
      "family", po::value<std::string>(), "family plugin or model_type (default: config.json model_type)")(
      "from", po::value<std::string>(), "the checkpoint's layout (default: detected)");
  add_plugin_options(p.options());
  p.positional("checkpoint", 1);
  auto vm = p.parse(args, globals);
  const int layer_index = static_cast<int>(integer_value(cli_value(vm, "layer"), 0, 1 << 30, "a decoder layer"));
  const int threads = threads_value(cli_value(vm, "threads"));

  std::string in_path = vm["input"].as<std::string>();
  safetensors_file in(in_path);
  const tensor_info* x = in.find("input");
  if (!x) {
    // Say what is there: a file of activations saved under another name is the usual case.
    std::string held;
    for (std::size_t i = 0; i < in.tensors().size() && i < 4; ++i)
      held += std::string(i ? ", " : "") + printable(in.tensors()[i].name) + " " + shape_string(in.tensors()[i].shape);
    if (in.tensors().size() > 4) held += ", ... (" + std::to_string(in.tensors().size()) + " in all)";
    throw error(in_path + ": no tensor named 'input' (expected input [T, H]); it holds " + (held.empty() ? "no tensors" : held) +
                ": save the activations under the name `input`");
  }
  if (x->shape.size() != 2) throw error(in_path + ": 'input' has shape " + shape_string(x->shape) + ", expected [T, H]");
  app::moe_run_request req;
  req.checkpoint = vm["checkpoint"].as<std::string>();
  if (vm.count("family")) req.family = vm["family"].as<std::string>();
  if (vm.count("from")) req.layout = vm["from"].as<std::string>();
  req.layer = layer_index;
  req.input = {in.data(*x), std::string(dtype_name(x->type)), x->shape[0], x->shape[1], in_path + ": 'input'"};
  req.backend = vm["backend"].as<std::string>();
  req.threads = threads;
  req.backend_options = backend_option_values(vm);
  req.plugin_paths = plugin_paths(vm);
  req.output = vm["output"].as<std::string>();
  req.input_file = in_path;
  const app::moe_run_result r = take(app::run_moe(req));
  // What the backend did at create (its kernels, and any copy of the experts it made, with
  // bytes and seconds), in its own words.
  if (!r.describe.empty()) spdlog::info("moe run: backend {}: {}", r.backend, r.describe);
  const std::int64_t T = r.tokens, H = r.hidden, E = r.experts, K = r.top_k;

  std::string out_path = vm["output"].as<std::string>();
  {
    safetensors_writer w(out_path, {{"output", dtype::F32, {T, H}}, {"router_logits", dtype::F32, {T, E}},
                                    {"topk_ids", dtype::I64, {T, K}}, {"topk_weights", dtype::F32, {T, K}}});
    for (std::size_t i = 0; i < w.tensors().size(); ++i) {
      const std::string& n = w.tensors()[i].name;
      const void* src = n == "output" ? static_cast<const void*>(r.output.data())
                        : n == "router_logits" ? static_cast<const void*>(r.router_logits.data())
                        : n == "topk_ids" ? static_cast<const void*>(r.topk_ids.data())
                                          : static_cast<const void*>(r.topk_weights.data());
      w.write(i, 0, src, w.tensors()[i].nbytes());
    }
    w.commit();
  }
  if (globals.json) {
    std::cout << json::dump(json::value(json::object{{"backend", json::value(r.backend)},
                                                      {"why", json::value(r.why)},
                                                      {"family", json::value(r.family)},
                                                      {"layout", json::value(r.layout)},
                                                      {"layer", json::value(r.layer)},
                                                      {"tokens", json::value(T)},
                                                      {"packed_bytes", json::value(r.packed_bytes)},
                                                      {"load_ms", json::value(r.load_ms)},
                                                      {"create_ms", json::value(r.create_ms)},
                                                      {"forward_ms", json::value(r.forward_ms)},
                                                      {"backend_describe", json::value(r.describe)},
                                                      {"output", json::value(out_path)}}),
                            2)
              << "\n";
  } else {
    std::cout << "backend " << r.backend << " (" << r.why << ")\n"
              << "layer " << r.layer << " of " << req.checkpoint << " (family " << r.family << ", layout " << r.layout << "; "
              << r.layer_describe << ", " << r.packed_bytes << " bytes packed)\n"
              << "T=" << T << " tokens, " << dtype_name(x->type) << " input; load " << format_duration(r.load_ms / 1e3)
              << ", create " << format_duration(r.create_ms / 1e3) << ", forward " << format_duration(r.forward_ms / 1e3)
              << " -> " << out_path << "\n";
  }
  return 0;
}

}  // namespace moereg::cli
