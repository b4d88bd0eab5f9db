// SPDX-License-Identifier: Apache-2.0
// moereg moe run: the MoE block of one decoder layer, read from a checkpoint in whatever
// layout it is stored, routed as its family declares, on the backend chosen.
#include <chrono>
#include <cmath>
#include <iostream>

#include "backend_choice.h"
#include "command.h"
#include "model_session.h"
#include "moereg/base/error.h"
#include "moereg/base/parallel.h"
#include "moereg/base/log.h"
#include "moereg/base/units.h"
#include "moereg/plan/moe_layer.h"
#include "moereg/routing/router.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/tensor/tensor_view.h"
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
      "key=value, repeatable: a tuning option of the backend (docs/backends.md lists the cpu backend's)")(
      "family", po::value<std::string>(), "family plugin or model_type (default: config.json model_type)")(
      "from", po::value<std::string>(), "the checkpoint's layout (default: detected)");
  add_plugin_options(p.options());
  p.positional("checkpoint", 1);
  auto vm = p.parse(args, globals);
  const int layer_index = static_cast<int>(integer_value(cli_value(vm, "layer"), 0, 1 << 30, "a decoder layer"));
  const int threads = threads_value(cli_value(vm, "threads"));

  auto t0 = std::chrono::steady_clock::now();
  session_request req;
  req.checkpoint = vm["checkpoint"].as<std::string>();
  if (vm.count("family")) req.family = vm["family"].as<std::string>();
  if (vm.count("from")) req.from_layout = vm["from"].as<std::string>();
  model_session s = open_model(req, vm);
  decoded_checkpoint dec = decode_checkpoint(*s.ckpt, s.spec, *s.layout, s.dims);
  std::unique_ptr<moe_layer> layer = load_moe_layer(dec, layer_index);
  if (s.dims.K <= 0) throw error(s.spec.manifest_path + ": dims has no K (experts per token); moe run needs it");

  std::string in_path = vm["input"].as<std::string>();
  safetensors_file in(in_path);
  const tensor_info* x = in.find("input");
  if (!x) throw error(in_path + ": no tensor named 'input' (expected input [T, H])");
  if (x->shape.size() != 2 || x->shape[1] != s.dims.H)
    throw error(in_path + ": 'input' has shape " + shape_string(x->shape) + ", expected [T, " + std::to_string(s.dims.H) + "]");
  if (x->type != dtype::F32 && x->type != dtype::BF16)
    throw error(in_path + ": 'input' is " + std::string(dtype_name(x->type)) + ", expected F32 or BF16");
  const std::int64_t T = x->shape[0], H = s.dims.H, K = s.dims.K, E = s.dims.E;
  moereg_tensor_view xv = contiguous_view(const_cast<std::byte*>(in.data(*x)), x->type, {T, H});

  router r(layer->routing, s.spec.manifest_path + " routing");
  routing_result routed;
  r.route(xv, routed);

  moereg_backend_options opts{};
  opts.threads = static_cast<int>(resolve_threads(threads));
  auto t_create = std::chrono::steady_clock::now();
  std::unique_ptr<backend_instance> backend =
      create_backend(*s.registry, vm["backend"].as<std::string>(), layer->weights, layer->routing, opts,
                     parse_backend_options(vm.count("backend-option") ? vm["backend-option"].as<std::vector<std::string>>()
                                                                     : std::vector<std::string>{}));
  std::vector<float> out(static_cast<std::size_t>(T * H));
  moereg_tensor_view ids = contiguous_view(routed.ids.data(), dtype::I64, {T, K});
  moereg_tensor_view weights = contiguous_view(routed.weights.data(), dtype::F32, {T, K});
  moereg_tensor_view ov = contiguous_view(out.data(), dtype::F32, {T, H});
  auto t_forward = std::chrono::steady_clock::now();
  throw_if_error(backend->api().forward(backend->handle(), &xv, &ids, &weights, &ov),
                 "backend " + backend->record().name + " forward");
  auto t_done = std::chrono::steady_clock::now();
  // What the backend did at create (its kernels, and any copy of the experts it made, with
  // bytes and seconds), in its own words.
  const std::string described = backend->describe();
  if (!described.empty()) spdlog::info("moe run: backend {}: {}", backend->record().name, described);

  std::string out_path = vm["output"].as<std::string>();
  {
    safetensors_writer w(out_path, {{"output", dtype::F32, {T, H}}, {"router_logits", dtype::F32, {T, E}},
                                    {"topk_ids", dtype::I64, {T, K}}, {"topk_weights", dtype::F32, {T, K}}});
    for (std::size_t i = 0; i < w.tensors().size(); ++i) {
      const std::string& n = w.tensors()[i].name;
      const void* src = n == "output" ? static_cast<const void*>(out.data())
                        : n == "router_logits" ? static_cast<const void*>(routed.logits.data())
                        : n == "topk_ids" ? static_cast<const void*>(routed.ids.data())
                                          : static_cast<const void*>(routed.weights.data());
      w.write(i, 0, src, w.tensors()[i].nbytes());
    }
    w.commit();
  }
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  if (globals.json) {
    std::cout << json::dump(json::value(json::object{{"backend", json::value(backend->record().name)},
                                                      {"why", json::value(backend->why())},
                                                      {"family", json::value(s.spec.name)},
                                                      {"layout", json::value(s.layout->name)},
                                                      {"layer", json::value(layer->layer)},
                                                      {"tokens", json::value(T)},
                                                      {"packed_bytes", json::value(layer->packed_bytes)},
                                                      {"load_ms", json::value(ms(t0, t_create))},
                                                      {"create_ms", json::value(ms(t_create, t_forward))},
                                                      {"forward_ms", json::value(ms(t_forward, t_done))},
                                                      {"backend_describe", json::value(described)},
                                                      {"output", json::value(out_path)}}),
                            2)
              << "\n";
  } else {
    std::cout << "backend " << backend->record().name << " (" << backend->why() << ")\n"
              << "layer " << layer->layer << " of " << s.ckpt->path() << " (family " << s.spec.name << ", layout "
              << s.layout->name << "; " << layer->describe << ", " << layer->packed_bytes << " bytes packed)\n"
              << "T=" << T << " tokens, " << dtype_name(x->type) << " input; load " << format_duration(ms(t0, t_create) / 1e3)
              << ", create " << format_duration(ms(t_create, t_forward) / 1e3) << ", forward "
              << format_duration(ms(t_forward, t_done) / 1e3) << " -> " << out_path << "\n";
  }
  return 0;
}

}  // namespace moereg::cli
