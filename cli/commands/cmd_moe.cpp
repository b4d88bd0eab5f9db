// moereg moe bench: times a fused-MoE backend on real model shapes (synthetic bf16 weights)
// against the eager PyTorch loop of transformers, on the same weights, in the same run.
// `moe run` is in cmd_moe_run.cpp.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/log.h"
#include "moereg/routing/router.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/tensor/dtype.h"
#include "moereg/tensor/tensor_view.h"

namespace moereg::cli {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

struct moe_preset {
  const char* name;
  std::int64_t E, H, I, K, Is;  // Is = 0: no shared expert
  moereg_routing_params routing;  // router views filled later
  const char* note;
};

moereg_routing_params softmax_routing(bool renorm) {
  moereg_routing_params r{};
  r.renormalize = renorm;
  r.routed_scaling_factor = 1;
  return r;
}

moereg_routing_params deepseek_v3_routing() {
  moereg_routing_params r{};
  r.scoring = MOEREG_SCORING_SIGMOID;
  r.logits_in_f32 = 1;
  r.n_group = 8;
  r.topk_group = 4;
  r.group_score = MOEREG_GROUP_SCORE_TOP2_SUM;
  r.renormalize = 1;
  r.renorm_eps = 1e-20f;
  r.routed_scaling_factor = 2.5f;
  return r;
}

const std::vector<moe_preset>& presets() {
  static const std::vector<moe_preset> p = {
      {"qwen3_30b_a3b", 128, 2048, 768, 8, 0, softmax_routing(true), "Qwen3-30B-A3B layer"},
      {"mixtral_8x7b", 8, 4096, 14336, 2, 0, softmax_routing(true), "Mixtral-8x7B layer"},
      {"deepseek_v3_e64", 64, 7168, 2048, 8, 2048, deepseek_v3_routing(),
       "DeepSeek-V3 layer shapes (H, I, K, shared expert, 8 groups keep 4) with 64 of its 256 experts, to fit in memory"},
      {"tiny", 8, 256, 128, 2, 128, softmax_routing(true), "small shapes for a quick check"},
  };
  return p;
}

// --- the backend library (one small function; the plugin registry takes this over) ---

struct bench_status {
  int32_t code;
  std::string message;
};
moereg_status* bench_status_create(int32_t code, const char* message) noexcept {
  try {
    return reinterpret_cast<moereg_status*>(new bench_status{code, message ? message : ""});
  } catch (...) {
    return nullptr;
  }
}
void bench_log(int32_t, const char* message) noexcept {
  try {
    spdlog::debug("backend: {}", message ? message : "");
  } catch (...) {
  }
}
const moereg_host_api bench_host = {MOEREG_PLUGIN_API_VERSION, &bench_status_create, &bench_log};

void check(moereg_status* s, const std::string& who) {
  if (!s) return;
  auto* b = reinterpret_cast<bench_status*>(s);
  std::string text = who + ": " + b->message;
  delete b;
  throw error(text);
}

std::string exe_dir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : p.parent_path().string();
}

// <exe>/../lib/moereg/backends/libmoereg_backend_<name>.so, as built and as installed.
const moereg_backend_api* load_backend(const std::string& name) {
  std::string path = exe_dir() + "/../lib/moereg/backends/libmoereg_backend_" + name + ".so";
  void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);  // kept loaded for the process
  if (!lib) throw error(path + ": cannot load backend: " + ::dlerror());
  auto entry = reinterpret_cast<moereg_backend_entry_fn>(::dlsym(lib, MOEREG_BACKEND_ENTRY_SYMBOL));
  if (!entry) throw error(path + ": no symbol " MOEREG_BACKEND_ENTRY_SYMBOL);
  const moereg_backend_api* api = entry(&bench_host);
  if (!api) throw error(path + ": entry returned no table for API version " + std::to_string(MOEREG_PLUGIN_API_VERSION));
  if (api->api_version < MOEREG_PLUGIN_API_MIN || api->api_version > MOEREG_PLUGIN_API_VERSION)
    throw error(path + ": API version " + std::to_string(api->api_version) + ", expected " +
                std::to_string(MOEREG_PLUGIN_API_MIN) + ".." + std::to_string(MOEREG_PLUGIN_API_VERSION));
  return api;
}

// --- synthetic data ---

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in +-scale*sqrt(3) (standard deviation `scale`), never exactly zero.
void fill_bf16(std::uint16_t* out, std::size_t n, float scale, std::uint64_t seed) {
  std::uint64_t s = seed;
  for (std::size_t i = 0; i < n; ++i) {
    double u = (static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53) * 2 - 1;
    float v = static_cast<float>(u * 1.7320508 * scale);
    std::uint16_t b = f32_to_bf16(v);
    out[i] = (b & 0x7FFF) ? b : 0x3C00;  // 0.0078125 instead of a zero
  }
}

// Writes the named tensors of random bf16 values with `threads` threads, 16 MiB at a time.
void write_random(safetensors_writer& w, const std::vector<std::pair<std::string, float>>& which, std::uint64_t seed,
                  int threads) {
  struct job {
    std::size_t index;
    std::uint64_t offset, bytes;
    float scale;
  };
  std::vector<job> jobs;
  const std::uint64_t chunk = 16ull << 20;
  for (const auto& [name, scale] : which)
    for (std::size_t i = 0; i < w.tensors().size(); ++i)
      if (w.tensors()[i].name == name)
        for (std::uint64_t o = 0; o < w.tensors()[i].nbytes(); o += chunk)
          jobs.push_back({i, o, std::min(chunk, w.tensors()[i].nbytes() - o), scale});
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    std::vector<std::uint16_t> buf(chunk / 2);
    for (std::size_t j; (j = next++) < jobs.size();) {
      fill_bf16(buf.data(), jobs[j].bytes / 2, jobs[j].scale, seed * 1000003 + j);
      w.write(jobs[j].index, jobs[j].offset, buf.data(), jobs[j].bytes);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

moereg_tensor_view view_of(const safetensors_file& f, const std::string& name) {
  const tensor_info* t = f.find(name);
  if (!t) return moereg_tensor_view{};
  return contiguous_view(f.data(*t), t->type, t->shape);
}

// Best of three multi-threaded reads of a 1 GiB buffer: the machine's read bandwidth.
double measure_read_bandwidth(int threads) {
  const std::size_t bytes = 1ull << 30, n = bytes / 8;
  std::vector<std::uint64_t> buf(n, 1);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<std::uint64_t> sums(static_cast<std::size_t>(threads), 0);
    auto t0 = clock_type::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        std::size_t b = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
        std::size_t e = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
        std::uint64_t s = 0;
        for (std::size_t i = b; i < e; ++i) s += buf[i];
        sums[static_cast<std::size_t>(t)] = s;
      });
    for (auto& t : pool) t.join();
    double sec = std::chrono::duration<double>(clock_type::now() - t0).count();
    std::uint64_t total = 0;
    for (auto s : sums) total += s;
    if (total != n) throw error("bandwidth probe: read back a wrong sum");
    best = std::max(best, static_cast<double>(bytes) / sec);
  }
  return best;
}

// Device memory a backend allocated through its table; freed with it.
struct device_buffer {
  const moereg_backend_api* api = nullptr;
  moereg_backend* backend = nullptr;
  void* ptr = nullptr;
  device_buffer(const moereg_backend_api* a, moereg_backend* b, std::size_t bytes) : api(a), backend(b) {
    check(api->alloc(backend, bytes, &ptr), std::string("backend ") + api->name + ": allocate " + std::to_string(bytes) + " bytes");
  }
  ~device_buffer() { api->free(backend, ptr); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
};

// Device-to-device copy bandwidth through the backend's own copy (bytes read + written, as
// bench/cuda/bench_moe.py counts it): the ceiling for a layer that streams its weights.
double measure_device_bandwidth(const moereg_backend_api* api, moereg_backend* backend) {
  const std::size_t bytes = 1ull << 30;
  device_buffer a(api, backend, bytes), b(api, backend, bytes);
  const std::string what = std::string("backend ") + api->name + ": bandwidth probe";
  check(api->copy(backend, b.ptr, a.ptr, bytes, 2), what);
  check(api->synchronize(backend), what);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = clock_type::now();
    check(api->copy(backend, b.ptr, a.ptr, bytes, 2), what);
    check(api->synchronize(backend), what);
    best = std::max(best, 2.0 * static_cast<double>(bytes) / std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  return best;
}

// The python that runs the reference: the one given, else the first candidate that imports torch
// (a GPU host's python3 on PATH, Debian's python3-torch at /usr/bin/python3).
std::string find_python(const std::string& given) {
  if (!given.empty()) return given;
  for (const char* candidate : {"python3", "/usr/bin/python3"}) {
    std::string cmd = std::string("'") + candidate + "' -c 'import torch' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return candidate;
  }
  throw error("no python with torch found (tried python3 on PATH and /usr/bin/python3); pass --python PATH or --no-reference");
}

std::vector<std::int64_t> parse_tokens(const std::string& s) {
  std::vector<std::int64_t> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) {
    try {
      std::size_t used = 0;
      long long v = std::stoll(part, &used);
      if (used != part.size() || v <= 0) throw std::invalid_argument(part);
      out.push_back(v);
    } catch (const std::exception&) {
      throw usage_error("--tokens: expected comma-separated positive integers, found '" + part + "'");
    }
  }
  if (out.empty()) throw usage_error("--tokens: expected at least one value");
  return out;
}

std::string find_reference_script(const std::string& given) {
  if (!given.empty()) return given;
  for (const std::string& p : {exe_dir() + "/../share/moereg/bench/moe/torch_reference.py",
                               exe_dir() + "/../../bench/moe/torch_reference.py", std::string("bench/moe/torch_reference.py")})
    if (fs::exists(p)) return fs::weakly_canonical(p).string();
  throw error("bench/moe/torch_reference.py not found beside the binary; pass --reference-script PATH or --no-reference");
}

std::string run_capture(const std::string& cmd, int& status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw error("cannot run: " + cmd);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  status = ::pclose(p);
  return out;
}

struct bench_row {
  std::int64_t tokens = 0;
  double seconds = 0, weight_bytes = 0, flops = 0;
  double reference_seconds = NAN, dense_seconds = NAN, dense_gflops = NAN, max_rel_diff = NAN;
};

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
      "backend", po::value<std::string>()->default_value("auto"), "cpu, cuda, or auto (the backend whose probe scores highest here)")(
      "threads", po::value<int>()->default_value(0), "threads for the backend and for PyTorch (0 = all cores)")(
      "min-seconds", po::value<double>()->default_value(1.0), "time each measurement for at least this long")(
      "work-dir", po::value<std::string>()->default_value(fs::temp_directory_path().string()), "where the weight file goes")(
      "python", po::value<std::string>()->default_value(""), "python with torch, for the reference (default: the first of python3 on PATH and /usr/bin/python3 that imports torch)")(
      "reference-script", po::value<std::string>()->default_value(""), "torch_reference.py (found beside the binary)")(
      "no-reference", po::bool_switch(), "skip the PyTorch reference")(
      "seed", po::value<std::uint64_t>()->default_value(1), "random seed");
  auto vm = p.parse(args, globals);
  const std::string preset_name = vm["preset"].as<std::string>();
  auto it = std::find_if(presets().begin(), presets().end(), [&](const moe_preset& q) { return preset_name == q.name; });
  if (it == presets().end()) {
    std::string names;
    for (const auto& q : presets()) names += (names.empty() ? "" : ", ") + std::string(q.name);
    throw usage_error("--preset: unknown '" + preset_name + "', expected one of " + names);
  }
  const moe_preset pr = *it;
  const std::vector<std::int64_t> tokens = parse_tokens(vm["tokens"].as<std::string>());
  const int cores = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  const int threads = vm["threads"].as<int>() > 0 ? vm["threads"].as<int>() : cores;
  const double min_seconds = vm["min-seconds"].as<double>();
  const bool reference = !vm["no-reference"].as<bool>();
  const std::string script = reference ? find_reference_script(vm["reference-script"].as<std::string>()) : "";
  const std::uint64_t seed = vm["seed"].as<std::uint64_t>();

  std::string backend_name = vm["backend"].as<std::string>();
  if (backend_name == "auto") {
    // The same rule as `moe run`: the installed backend whose probe scores highest.
    int best = 0;
    std::string why;
    for (const char* candidate : {"cuda", "cpu"}) {
      if (!fs::exists(exe_dir() + "/../lib/moereg/backends/libmoereg_backend_" + candidate + ".so")) continue;
      char reason[256] = {0};
      int score = load_backend(candidate)->probe(reason, sizeof reason);
      why += std::string(why.empty() ? "" : ", ") + candidate + " " + std::to_string(score) + (reason[0] ? std::string(" (") + reason + ")" : "");
      if (score > best) {
        best = score;
        backend_name = candidate;
      }
    }
    if (backend_name == "auto") throw error("no backend can run here: " + why);
    spdlog::info("moe bench: backend {} (auto; probe scores: {})", backend_name, why);
  }
  const moereg_backend_api* api = load_backend(backend_name);

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
  spdlog::info("moe bench: {} weights written in {:.1f} s ({} bytes)", pr.name,
               std::chrono::duration<double>(clock_type::now() - t_gen).count(), weights.file_size());

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
      moereg_tensor_view xv{};
      xv.data = xs[i].data();
      xv.dtype = MOEREG_DTYPE_BF16;
      xv.rank = 2;
      xv.shape[0] = T;
      xv.shape[1] = H;
      xv.strides[0] = H;
      xv.strides[1] = 1;
      rt.route(xv, routes[i]);
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
  moereg_backend* backend = nullptr;
  check(api->create(&mw, &rp, &opts, &backend), std::string("backend ") + api->name);
  struct destroyer {
    const moereg_backend_api* a;
    moereg_backend* b;
    ~destroyer() { a->destroy(b); }
  } destroy_backend{api, backend};
  std::string described;
  if (api->describe) {
    moereg_sink sink{&described, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
    check(api->describe(backend, sink), std::string("backend ") + api->name);
  }

  // A backend with its own memory is timed the way an engine uses it: inputs and outputs
  // already on the device, the call followed by a synchronize.
  const bool on_device = api->alloc && api->free && api->copy && api->synchronize;
  const double bandwidth = on_device ? measure_device_bandwidth(api, backend) : measure_read_bandwidth(threads);
  spdlog::info("moe bench: {} bandwidth {:.1f} GB/s", on_device ? "device copy (read + write)" : "read", bandwidth / 1e9);

  const double expert_bytes = static_cast<double>(3 * I * H * 2), shared_bytes = static_cast<double>(3 * Is * H * 2);
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
    moereg_tensor_view ov{};
    ov.data = out.data();
    ov.dtype = MOEREG_DTYPE_F32;
    ov.rank = 2;
    ov.shape[0] = T;
    ov.shape[1] = H;
    ov.strides[0] = H;
    ov.strides[1] = 1;
    std::function<void()> once = [&] { check(api->forward(backend, &x, &ids, &wt, &ov), std::string("backend ") + api->name); };
    std::unique_ptr<device_buffer> dx, dids, dwt, dout;
    moereg_tensor_view dxv = x, didsv = ids, dwtv = wt, doutv = ov;
    if (on_device) {
      auto upload = [&](std::unique_ptr<device_buffer>& buf, moereg_tensor_view& v, std::size_t bytes, bool copy_in) {
        buf = std::make_unique<device_buffer>(api, backend, bytes);
        if (copy_in) check(api->copy(backend, buf->ptr, v.data, bytes, 0), std::string("backend ") + api->name + ": upload");
        v.data = buf->ptr;
        v.memory = MOEREG_MEMORY_DEVICE;
      };
      upload(dx, dxv, static_cast<std::size_t>(T * H) * 2, true);
      upload(dids, didsv, static_cast<std::size_t>(T * K) * 8, true);
      upload(dwt, dwtv, static_cast<std::size_t>(T * K) * 4, true);
      upload(dout, doutv, out.size() * 4, false);
      once = [&] {
        check(api->forward(backend, &dxv, &didsv, &dwtv, &doutv), std::string("backend ") + api->name);
        check(api->synchronize(backend), std::string("backend ") + api->name);
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
      check(api->copy(backend, out.data(), dout->ptr, out.size() * 4, 1), std::string("backend ") + api->name + ": download");
    rows.push_back(r);
    outputs.push_back(std::move(out));
  }

  std::string torch_version;
  if (reference) {
    std::string tok;
    for (auto T : tokens) tok += (tok.empty() ? "" : ",") + std::to_string(T);
    std::ostringstream cmd;
    cmd << "'" << find_python(vm["python"].as<std::string>()) << "' '" << script << "' --weights '" << dir
        << "/weights.safetensors' --inputs '" << dir << "/inputs.safetensors' --outputs '" << dir
        << "/reference.safetensors' --tokens " << tok << " --threads " << threads << " --min-seconds " << min_seconds
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
      rows[k].reference_seconds = row.find("seconds")->as_double();
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
            << (on_device ? ", device copy bandwidth (read + write) " : ", read bandwidth ") << std::fixed
            << std::setprecision(1) << bandwidth / 1e9 << " GB/s"
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
              << (std::isnan(r.max_rel_diff) ? std::string("         -") : cell(r.max_rel_diff, 10, 4)) << "\n";
  }
  return 0;
}

}  // namespace

int run_moe_run(const std::vector<std::string>& args, global_options& globals);

int run_moe(const std::vector<std::string>& args, global_options& globals) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: moereg moe run CKPT --layer L --input IN --output OUT [options]   (moereg moe run --help)\n"
                 "       moereg moe bench [options]                                       (moereg moe bench --help)\n";
    if (args.empty()) throw usage_error("moe: expected a subcommand: run or bench");
    return 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "bench") return run_bench(rest, globals);
  if (args[0] == "run") return run_moe_run(rest, globals);
  throw usage_error("moe: unknown subcommand '" + args[0] + "', expected run or bench");
}

}  // namespace moereg::cli
