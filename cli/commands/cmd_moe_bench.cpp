// SPDX-License-Identifier: Apache-2.0
// moereg moe bench: times a fused-MoE backend on real model shapes (synthetic bf16 weights)
// against the eager PyTorch loop of transformers, on the same weights, in the same run.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "backend_choice.h"
#include "bench_support.h"
#include "command.h"
#include "moe_presets.h"
#include "moereg/base/error.h"
#include "moereg/base/parallel.h"
#include "moereg/base/json.h"
#include "moereg/base/log.h"
#include "moereg/base/units.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/routing/router.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/tensor/dtype.h"
#include "moereg/tensor/tensor_view.h"
#include "option_values.h"
#include "plugin_options.h"

namespace moereg::cli {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

moereg_tensor_view view_of(const safetensors_file& f, const std::string& name) {
  const tensor_info* t = f.find(name);
  if (!t) return moereg_tensor_view{};
  return contiguous_view(f.data(*t), t->type, t->shape);
}

struct bench_row {
  std::int64_t tokens = 0;
  double seconds = 0, weight_bytes = 0, flops = 0;
  double reference_seconds = NAN, dense_seconds = NAN, dense_gflops = NAN, max_rel_diff = NAN;
  std::int64_t reference_runs = 0;
  std::string reference_skipped;  // why the reference did not run this row
};

}  // namespace

int run_bench(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("moe bench [--preset NAME] [--tokens 1,16,128,1024] [--backend cpu] [--threads N] [--json]",
                   "Time one MoE layer on real model shapes with synthetic random bf16 weights, and in the\n"
                   "same run the eager per-expert loop of transformers in PyTorch (--python) on the same\n"
                   "weights and routing, one dense bf16 matmul of the same FLOPs, and the memory bandwidth.\n"
                   "A backend with device memory (cuda) is timed on device-resident inputs and outputs, and\n"
                   "then PyTorch runs on the GPU too and the bandwidth is the device's copy bandwidth.\n"
                   "Presets: qwen3_30b_a3b, mixtral_8x7b, deepseek_v3_e64, tiny.\n"
                   "(Benchmarking a checkpoint's own layer, CKPT --layer L, is not available yet.)");
  p.options().add_options()("preset", po::value<std::string>()->default_value("qwen3_30b_a3b"), "shape preset")(
      "tokens", po::value<std::string>()->default_value("1,16,128,1024"), "token counts T")(
      "backend", po::value<std::string>()->default_value("auto"), "cpu, cuda, another installed backend, or auto (best probe score)")(
      "threads", po::value<std::string>()->default_value("0"), "threads for the backend and for PyTorch, 0 to 4096 (0 = all cores)")(
      "backend-option", po::value<std::vector<std::string>>()->composing(),
      "key=value, repeatable: a tuning option of the backend (docs/backends.md lists the cpu backend's)")(
      "min-seconds", po::value<std::string>()->default_value("1"), "time each measurement for at least this long (0 to 3600)")(
      "work-dir", po::value<std::string>()->default_value(fs::temp_directory_path().string()), "where the weight file goes")(
      "python", po::value<std::string>()->default_value(""), "python with torch, for the reference (default: the first of python3 on PATH and /usr/bin/python3 that imports torch)")(
      "reference-script", po::value<std::string>()->default_value(""), "torch_reference.py (found beside the binary)")(
      "no-reference", po::bool_switch(), "skip the PyTorch reference")(
      "reference-max-seconds", po::value<std::string>()->default_value("120"),
      "skip reference rows estimated to take longer than this per run, and time one warm run where three "
      "would not fit (0 = no limit). Debian's PyTorch runs bf16 matmuls at ~1 GFLOP/s on CPUs without "
      "AVX-512, where a mixtral_8x7b T=1024 layer takes a quarter of an hour per run")(
      "seed", po::value<std::string>()->default_value("1"), "random seed");
  add_plugin_options(p.options());
  auto vm = p.parse(args, globals);
  const moe_preset& pr = find_preset(vm["preset"].as<std::string>());
  const std::vector<std::int64_t> tokens = parse_tokens(vm["tokens"].as<std::string>());
  const int threads = static_cast<int>(resolve_threads(threads_value(cli_value(vm, "threads"))));
  const double min_seconds = number_value(cli_value(vm, "min-seconds"), 0, 3600, "seconds");
  const double reference_max_seconds =
      number_value(cli_value(vm, "reference-max-seconds"), 0, 1e6, "seconds per reference run, 0 = no limit");
  const bool reference = !vm["no-reference"].as<bool>();
  const std::string script = reference ? find_reference_script(vm["reference-script"].as<std::string>()) : "";
  // Before the weights are written: a missing PyTorch is reported at once.
  const std::string python = reference ? find_python(vm["python"].as<std::string>()) : "";
  const std::uint64_t seed = uint64_value(cli_value(vm, "seed"));

  std::unique_ptr<plugin_registry> registry = make_registry(vm);

  // Weights and inputs go to safetensors files that both moereg and PyTorch map.
  std::string dir = vm["work-dir"].as<std::string>() + "/moereg-bench-" + std::to_string(::getpid());
  fs::create_directories(dir);
  struct cleanup {
    std::string d;
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup_dir{dir};
  const std::int64_t E = pr.E, H = pr.H, I = pr.I, K = pr.K, Is = pr.Is;
  auto t_gen = clock_type::now();
  {
    std::vector<tensor_spec> specs = {{"w13", dtype::BF16, {E, 2 * I, H}}, {"w2", dtype::BF16, {E, H, I}},
                                      {"router", dtype::BF16, {E, H}}};
    if (Is) {
      specs.push_back({"shared_w13", dtype::BF16, {2 * Is, H}});
      specs.push_back({"shared_w2", dtype::BF16, {H, Is}});
    }
    safetensors_writer w(dir + "/weights.safetensors", specs, {});
    write_random(w, {{"w13", 0.02f}, {"w2", 0.02f}, {"router", 0.02f}, {"shared_w13", 0.02f}, {"shared_w2", 0.02f}}, seed,
                 threads);
    w.commit();
  }
  safetensors_file weights(dir + "/weights.safetensors");
  spdlog::info("moe bench: {} weights written in {} ({})", pr.name,
               format_duration(std::chrono::duration<double>(clock_type::now() - t_gen).count()), human_bytes(weights.file_size()));

  moereg_moe_weights mw{};
  mw.num_experts = E;
  mw.hidden = H;
  mw.intermediate = I;
  mw.w13 = view_of(weights, "w13");
  mw.w2 = view_of(weights, "w2");
  if (Is) {
    mw.shared_intermediate = Is;
    mw.shared_w13 = view_of(weights, "shared_w13");
    mw.shared_w2 = view_of(weights, "shared_w2");
  }
  moereg_routing_params rp = pr.routing;
  rp.num_experts = static_cast<std::int32_t>(E);
  rp.top_k = static_cast<std::int32_t>(K);
  rp.router = view_of(weights, "router");
  router rt(rp, std::string("preset ") + pr.name);

  // Inputs: x [T, H] bf16 per T, routed by the core router, written beside the weights.
  std::vector<routing_result> routes(tokens.size());
  {
    std::vector<std::vector<std::uint16_t>> xs(tokens.size());
    std::vector<tensor_spec> specs;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::int64_t T = tokens[i];
      xs[i].resize(static_cast<std::size_t>(T * H));
      fill_bf16(xs[i].data(), xs[i].size(), 1.0f, seed * 7919 + static_cast<std::uint64_t>(T));
      rt.route(contiguous_view(xs[i].data(), dtype::BF16, {T, H}), routes[i]);
      specs.push_back({"x." + std::to_string(T), dtype::BF16, {T, H}});
      specs.push_back({"ids." + std::to_string(T), dtype::I64, {T, K}});
      specs.push_back({"weights." + std::to_string(T), dtype::F32, {T, K}});
    }
    safetensors_writer w(dir + "/inputs.safetensors", specs, {});
    for (std::size_t j = 0; j < w.tensors().size(); ++j) {
      const tensor_info& t = w.tensors()[j];
      std::int64_t T = std::stoll(t.name.substr(t.name.find('.') + 1));
      auto i = static_cast<std::size_t>(std::find(tokens.begin(), tokens.end(), T) - tokens.begin());
      const void* src = t.name[0] == 'x' ? static_cast<const void*>(xs[i].data())
                        : t.name[0] == 'i' ? static_cast<const void*>(routes[i].ids.data())
                                           : static_cast<const void*>(routes[i].weights.data());
      w.write(j, 0, src, t.nbytes());
    }
    w.commit();
  }
  safetensors_file inputs(dir + "/inputs.safetensors");

  moereg_backend_options opts{};
  opts.threads = threads;
  std::unique_ptr<app::backend_instance> instance = app::create_backend(
      *registry, vm["backend"].as<std::string>(), mw, rp, opts,
      app::parse_backend_options(vm.count("backend-option") ? vm["backend-option"].as<std::vector<std::string>>() : std::vector<std::string>{}));
  spdlog::info("moe bench: backend {} ({})", instance->record().name, instance->why());
  const moereg_backend_api* api = &instance->api();
  moereg_backend* backend = instance->handle();
  const std::string described = instance->describe();

  // A backend with its own memory is timed the way an engine uses it: inputs and outputs
  // already on the device, the call followed by a synchronize.
  const bool on_device = api->alloc && api->free && api->copy && api->synchronize;
  const double bandwidth = on_device ? measure_device_bandwidth(api, backend) : measure_read_bandwidth(threads);
  spdlog::info("moe bench: {} bandwidth {}", on_device ? "device copy (read + write)" : "read", format_rate(bandwidth));

  // Bytes one routed expert streams: bf16, or the backend's own count of what it reads where
  // its describe gives one (quantized experts: codes and scales).
  double expert_bytes = static_cast<double>(3 * I * H * 2);
  const double shared_bytes = static_cast<double>(3 * Is * H * 2);
  if (!described.empty()) {
    const json::value d = json::parse(described, "backend describe");
    auto number = [&](const char* key) {
      const json::value* v = d.find(key);
      return !v ? 0.0 : v->is_integer() ? static_cast<double>(v->as_int()) : v->is_number() ? v->as_double() : 0.0;
    };
    if (number("weight_bytes") > 0) expert_bytes = (number("weight_bytes") + number("scale_bytes")) / static_cast<double>(E);
  }
  std::vector<bench_row> rows;
  std::vector<std::vector<float>> outputs;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::int64_t T = tokens[i];
    bench_row r;
    r.tokens = T;
    std::set<std::int64_t> hit(routes[i].ids.begin(), routes[i].ids.end());
    r.weight_bytes = static_cast<double>(hit.size()) * expert_bytes + shared_bytes;
    r.flops = 2.0 * 3 * static_cast<double>(H) * (static_cast<double>(T * K * I) + static_cast<double>(T * Is));
    moereg_tensor_view x = view_of(inputs, "x." + std::to_string(T));
    moereg_tensor_view ids = view_of(inputs, "ids." + std::to_string(T));
    moereg_tensor_view wt = view_of(inputs, "weights." + std::to_string(T));
    std::vector<float> out(static_cast<std::size_t>(T * H));
    moereg_tensor_view ov = contiguous_view(out.data(), dtype::F32, {T, H});
    std::function<void()> once = [&] { throw_if_error(api->forward(backend, &x, &ids, &wt, &ov), std::string("backend ") + api->name); };
    std::unique_ptr<device_buffer> dx, dids, dwt, dout;
    moereg_tensor_view dxv = x, didsv = ids, dwtv = wt, doutv = ov;
    if (on_device) {
      auto upload = [&](std::unique_ptr<device_buffer>& buf, moereg_tensor_view& v, std::size_t bytes, bool copy_in) {
        buf = std::make_unique<device_buffer>(api, backend, bytes);
        if (copy_in) throw_if_error(api->copy(backend, buf->ptr, v.data, bytes, 0), std::string("backend ") + api->name + ": upload");
        v.data = buf->ptr;
        v.memory = MOEREG_MEMORY_DEVICE;
      };
      upload(dx, dxv, static_cast<std::size_t>(T * H) * 2, true);
      upload(dids, didsv, static_cast<std::size_t>(T * K) * 8, true);
      upload(dwt, dwtv, static_cast<std::size_t>(T * K) * 4, true);
      upload(dout, doutv, out.size() * 4, false);
      once = [&] {
        throw_if_error(api->forward(backend, &dxv, &didsv, &dwtv, &doutv), std::string("backend ") + api->name);
        throw_if_error(api->synchronize(backend), std::string("backend ") + api->name);
      };
    }
    once();  // warm-up (and scratch growth)
    std::vector<double> times;
    double total = 0;
    while (times.size() < 3 || (total < min_seconds && times.size() < 100)) {
      auto t0 = clock_type::now();
      once();
      times.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
      total += times.back();
    }
    std::sort(times.begin(), times.end());
    r.seconds = times[times.size() / 2];
    if (on_device)
      throw_if_error(api->copy(backend, out.data(), dout->ptr, out.size() * 4, 1), std::string("backend ") + api->name + ": download");
    rows.push_back(r);
    outputs.push_back(std::move(out));
  }

  std::string torch_version;
  if (reference) {
    std::string tok;
    for (auto T : tokens) tok += (tok.empty() ? "" : ",") + std::to_string(T);
    std::ostringstream cmd;
    cmd << "'" << python << "' '" << script << "' --weights '" << dir
        << "/weights.safetensors' --inputs '" << dir << "/inputs.safetensors' --outputs '" << dir
        << "/reference.safetensors' --tokens " << tok << " --threads " << threads << " --min-seconds " << min_seconds
        << " --max-seconds " << reference_max_seconds
        << " --device " << (on_device && std::string(api->name) == "cuda" ? "cuda" : "cpu");
    spdlog::info("moe bench: reference: {}", cmd.str());
    int status = 0;
    std::string text = run_capture(cmd.str(), status);
    if (status != 0) throw error("PyTorch reference failed (exit status " + std::to_string(status) + "): " + cmd.str());
    json::value res = json::parse(text, "torch_reference.py output");
    torch_version = res.find("torch")->as_string() + ", " + std::to_string(res.find("threads")->as_int()) + " threads";
    safetensors_file ref(dir + "/reference.safetensors");
    for (const auto& row : res.find("rows")->as_array()) {
      std::int64_t T = row.find("tokens")->as_int();
      auto k = static_cast<std::size_t>(std::find(tokens.begin(), tokens.end(), T) - tokens.begin());
      if (k >= rows.size()) continue;
      if (const json::value* why = row.find("skipped")) {
        rows[k].reference_skipped = why->as_string();
        continue;
      }
      rows[k].reference_seconds = row.find("seconds")->as_double();
      if (const json::value* n = row.find("runs")) rows[k].reference_runs = n->as_int();
      rows[k].dense_seconds = row.find("dense_seconds")->as_double();
      rows[k].dense_gflops = row.find("dense_gflops")->as_double();
      const tensor_info* o = ref.find("output." + std::to_string(T));
      if (!o) continue;
      const float* rv = reinterpret_cast<const float*>(ref.data(*o));
      double max_ref = 0, max_d = 0;
      for (std::size_t j = 0; j < outputs[k].size(); ++j) {
        max_ref = std::max(max_ref, std::fabs(double(rv[j])));
        max_d = std::max(max_d, std::fabs(double(rv[j]) - outputs[k][j]));
      }
      rows[k].max_rel_diff = max_d / std::max(max_ref, 1e-30);
    }
  }

  if (globals.json) {
    json::array arr;
    for (const auto& r : rows) {
      json::object o = {{"tokens", r.tokens},
                        {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens / r.seconds},
                        {"weight_bytes", r.weight_bytes},
                        {"weight_bandwidth_fraction", r.weight_bytes / r.seconds / bandwidth},
                        {"gflops", r.flops / r.seconds / 1e9}};
      auto num = [](double v) { return std::isnan(v) ? json::value(nullptr) : json::value(v); };
      o.push_back({"reference_seconds", num(r.reference_seconds)});
      o.push_back({"speedup", num(r.reference_seconds / r.seconds)});
      o.push_back({"dense_gflops", num(r.dense_gflops)});
      o.push_back({"fraction_of_dense", num(r.flops / r.seconds / 1e9 / r.dense_gflops)});
      o.push_back({"max_rel_diff_vs_reference", num(r.max_rel_diff)});
      o.push_back({"reference_runs", r.reference_runs});
      if (!r.reference_skipped.empty()) o.push_back({"reference_skipped", r.reference_skipped});
      arr.push_back(json::value(std::move(o)));
    }
    json::object top = {{"preset", pr.name}, {"experts", E}, {"hidden", H}, {"intermediate", I}, {"top_k", K},
                        {"shared_intermediate", Is}, {"threads", threads}, {"read_bandwidth_bytes_per_second", bandwidth},
                        {"backend", std::string(api->name)}, {"torch", torch_version}, {"rows", json::value(std::move(arr))}};
    if (!described.empty()) top.push_back({"backend_describe", json::parse(described, "backend describe")});
    std::cout << json::dump(json::value(std::move(top)), 2) << "\n";
    return 0;
  }
  std::cout << pr.name << ": " << pr.note << "\n  E=" << E << " H=" << H << " I=" << I << " K=" << K;
  if (Is) std::cout << " shared Is=" << Is;
  std::cout << "; backend " << api->name << " " << described << "\n  threads " << threads
            << (on_device ? ", device copy bandwidth (read + write) " : ", read bandwidth ") << format_rate(bandwidth)
            << (reference ? ", reference: transformers eager loop in PyTorch " + torch_version : "") << "\n\n";
  std::cout << "  tokens     time ms    tokens/s  weights GB/s  of bw   GFLOP/s   torch ms  speedup  dense GF/s  of dense  rel diff\n";
  for (const auto& r : rows) {
    auto cell = [](double v, int w, int prec) {
      std::ostringstream s;
      if (std::isnan(v)) s << std::setw(w) << "-";
      else s << std::setw(w) << std::fixed << std::setprecision(prec) << v;
      return s.str();
    };
    std::cout << std::setw(8) << r.tokens << cell(r.seconds * 1e3, 12, 3) << cell(r.tokens / r.seconds, 12, 0)
              << cell(r.weight_bytes / r.seconds / 1e9, 14, 1) << cell(100 * r.weight_bytes / r.seconds / bandwidth, 6, 0) << "%"
              << cell(r.flops / r.seconds / 1e9, 10, 1) << cell(r.reference_seconds * 1e3, 11, 3)
              << cell(r.reference_seconds / r.seconds, 8, 2) << "x" << cell(r.dense_gflops, 11, 1)
              << cell(100 * r.flops / r.seconds / 1e9 / r.dense_gflops, 9, 0) << "%"
              << (std::isnan(r.max_rel_diff) ? std::string("         -") : cell(r.max_rel_diff, 10, 4))
              << (r.reference_runs == 1 ? "  (torch: 1 run)" : "") << "\n";
  }
  for (const auto& r : rows)
    if (!r.reference_skipped.empty())
      std::cout << "  T=" << r.tokens << ": no reference, " << r.reference_skipped << " (--reference-max-seconds)\n";
  return 0;
}

}  // namespace moereg::cli
