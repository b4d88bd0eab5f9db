// SPDX-License-Identifier: Apache-2.0
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>

#include "backend_choice.h"
#include "bench_fp8.h"
#include "bench_support.h"
#include "guard.h"
#include "read_bandwidth.h"
#include "moereg/app/bench.h"
#include "moereg/base/json.h"
#include "moereg/base/log.h"
#include "moereg/base/parallel.h"
#include "moereg/base/units.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/routing/router.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/tensor/tensor_view.h"
#include "session.h"

namespace fs = std::filesystem;

namespace moereg::app {

namespace {

using clock_type = std::chrono::steady_clock;

moereg_tensor_view view_of(const safetensors_file& f, const std::string& name) {
  const tensor_info* t = f.find(name);
  if (!t) return moereg_tensor_view{};
  return contiguous_view(f.data(*t), t->type, t->shape);
}

void check_request(const moe_bench_request& r) {
  if (r.experts < 1 || r.hidden < 1 || r.intermediate < 1 || r.top_k < 1 || r.top_k > r.experts || r.shared_intermediate < 0)
    throw usage_error("moe bench: shape " + r.shape + " (E=" + std::to_string(r.experts) + " H=" + std::to_string(r.hidden) +
                      " I=" + std::to_string(r.intermediate) + " K=" + std::to_string(r.top_k) +
                      "): expected positive sizes and 1 <= K <= E");
  if (r.tokens.empty()) throw usage_error("moe bench: no token counts given");
  for (auto T : r.tokens)
    if (T < 1) throw usage_error("moe bench: token count " + std::to_string(T) + ", expected 1 or more");
  if (!(r.min_seconds >= 0) || !(r.reference_max_seconds >= 0)) throw usage_error("moe bench: seconds must be 0 or more");
  if (r.weights != "bf16" && r.weights != "f8_e4m3")
    throw usage_error("moe bench: weights '" + r.weights + "', expected bf16 or f8_e4m3");
}

// The weight file both moereg and PyTorch map: w13, w2, router, and the shared expert; with
// F8 experts also w13_f8, w2_f8, shared_w13_f8, shared_w2_f8 and their scales (w13, w2 and the
// shared expert's bf16 tensors then hold the dequantized values PyTorch multiplies).
void write_weights(const std::string& path, const moe_bench_request& r, int threads) {
  const std::int64_t E = r.experts, H = r.hidden, I = r.intermediate, Is = r.shared_intermediate;
  const bool f8 = r.weights == "f8_e4m3";
  std::vector<tensor_spec> specs = {{"router", dtype::BF16, {E, H}}};
  if (f8) {
    for (auto&& s : fp8_expert_specs("w13", E, 2 * I, H, 2)) specs.push_back(s);
    for (auto&& s : fp8_expert_specs("w2", E, H, I, 1)) specs.push_back(s);
  } else {
    specs.push_back({"w13", dtype::BF16, {E, 2 * I, H}});
    specs.push_back({"w2", dtype::BF16, {E, H, I}});
  }
  if (Is && f8) {
    // The shared expert in F8 too, as DeepSeek-V3 and R1 ship it: one expert's tensors, 2-D.
    for (auto&& s : fp8_expert_specs("shared_w13", 1, 2 * Is, H, 2)) specs.push_back(s);
    for (auto&& s : fp8_expert_specs("shared_w2", 1, H, Is, 1)) specs.push_back(s);
    for (tensor_spec& s : specs)
      if (s.name.rfind("shared_", 0) == 0) s.shape.erase(s.shape.begin());
  } else if (Is) {
    specs.push_back({"shared_w13", dtype::BF16, {2 * Is, H}});
    specs.push_back({"shared_w2", dtype::BF16, {H, Is}});
  }
  // A preset larger than the room (deepseek_v3's bench file is 22.5 GB, 34 GB with F8) is
  // refused before its weights are made: a tmpfs that fills memory gets the process killed,
  // and the file then stays behind.
  std::uint64_t bytes = 0;
  for (const tensor_spec& s : specs) bytes += s.nbytes();
  check_room(fs::path(path).parent_path().string(), bytes, "moe bench: shape " + r.shape + "'s weights");
  safetensors_writer w(path, specs, {});
  if (f8) {
    write_fp8_experts(w, "w13", E, 2 * I, H, 2, 0.02f, r.seed, threads);
    write_fp8_experts(w, "w2", E, H, I, 1, 0.02f, r.seed + 1, threads);
    if (Is) {
      write_fp8_experts(w, "shared_w13", 1, 2 * Is, H, 2, 0.02f, r.seed + 2, threads);
      write_fp8_experts(w, "shared_w2", 1, H, Is, 1, 0.02f, r.seed + 3, threads);
    }
    write_random(w, {{"router", 0.02f}}, r.seed, threads);
  } else {
    write_random(w, {{"w13", 0.02f}, {"w2", 0.02f}, {"router", 0.02f}, {"shared_w13", 0.02f}, {"shared_w2", 0.02f}}, r.seed,
                 threads);
  }
  w.commit();
}

// Rotations per T: enough inputs, each routed afresh, that the experts they hit together
// hold at least four times the last-level cache even at 4 bits a weight (a quarter of their
// bf16 bytes), or every expert, or 16 inputs. Why: the timing repeats forwards, and with one
// input a T = 1 forward re-reads the same few experts (qwen3: 8 x 9.4 MB = 75 MB, under the
// 105 MB L3 of a Sapphire Rapids socket), which the cache then serves rather than memory.
constexpr std::size_t max_rotations = 16;

std::string rotation_suffix(std::int64_t T, std::size_t rot) {
  return std::to_string(T) + (rot ? "." + std::to_string(rot) : "");
}

// Inputs: x [T, H] bf16 per T and rotation, routed by the core router, written beside the
// weights as x.T, ids.T, weights.T (rotation 0, which PyTorch reads) and x.T.r, ... (r >= 1).
std::vector<std::vector<routing_result>> write_inputs(const std::string& path, const moe_bench_request& r, router& rt,
                                                      std::uint64_t llc) {
  const std::int64_t H = r.hidden, K = r.top_k;
  const double bf16_expert = static_cast<double>(3 * r.intermediate * H * 2);
  const double target = 4.0 * static_cast<double>(llc ? llc : std::uint64_t{256} << 20);
  std::vector<std::vector<routing_result>> routes(r.tokens.size());
  std::vector<std::vector<std::vector<std::uint16_t>>> xs(r.tokens.size());
  std::vector<tensor_spec> specs;
  std::vector<const void*> sources;  // one per spec
  for (std::size_t i = 0; i < r.tokens.size(); ++i) {
    const std::int64_t T = r.tokens[i];
    std::set<std::int64_t> hit;
    while (routes[i].empty() ||
           (static_cast<double>(hit.size()) * bf16_expert / 4 < target && static_cast<std::int64_t>(hit.size()) < r.experts &&
            routes[i].size() < max_rotations)) {
      const std::size_t rot = routes[i].size();
      xs[i].emplace_back(static_cast<std::size_t>(T * H));
      routes[i].emplace_back();
      fill_bf16(xs[i].back().data(), xs[i].back().size(), 1.0f, r.seed * 7919 + static_cast<std::uint64_t>(T) + rot * 104729);
      rt.route(contiguous_view(xs[i].back().data(), dtype::BF16, {T, H}), routes[i].back());
      hit.insert(routes[i].back().ids.begin(), routes[i].back().ids.end());
    }
  }
  for (std::size_t i = 0; i < r.tokens.size(); ++i)
    for (std::size_t rot = 0; rot < routes[i].size(); ++rot) {
      const std::int64_t T = r.tokens[i];
      specs.push_back({"x." + rotation_suffix(T, rot), dtype::BF16, {T, H}});
      specs.push_back({"ids." + rotation_suffix(T, rot), dtype::I64, {T, K}});
      specs.push_back({"weights." + rotation_suffix(T, rot), dtype::F32, {T, K}});
      sources.insert(sources.end(), {xs[i][rot].data(), routes[i][rot].ids.data(), routes[i][rot].weights.data()});
    }
  safetensors_writer w(path, specs, {});
  for (std::size_t j = 0; j < w.tensors().size(); ++j) w.write(j, 0, sources[j], w.tensors()[j].nbytes());
  w.commit();
  return routes;
}

// Bytes one routed expert streams: bf16, or the backend's own count of what it reads where
// its describe gives one (quantized experts: codes and scales).
double expert_bytes(const moe_bench_request& r, const std::string& described) {
  double bytes = static_cast<double>(3 * r.intermediate * r.hidden * 2);
  if (described.empty()) return bytes;
  const json::value d = json::parse(described, "backend describe");
  auto number = [&](const char* key) {
    const json::value* v = d.find(key);
    return !v ? 0.0 : v->is_integer() ? static_cast<double>(v->as_int()) : v->is_number() ? v->as_double() : 0.0;
  };
  if (number("weight_bytes") > 0) bytes = (number("weight_bytes") + number("scale_bytes")) / static_cast<double>(r.experts);
  return bytes;
}

// Times one row: the median forward over whole cycles of its rotations (on device-resident
// buffers when the backend has its own memory, each call followed by a synchronize); `out`
// gets rotation 0's output.
double time_forward(const moereg_backend_api* api, moereg_backend* backend, bool on_device, const safetensors_file& inputs,
                    std::int64_t T, std::size_t rotations, std::int64_t H, std::int64_t K, double min_seconds,
                    std::vector<float>& out) {
  out.assign(static_cast<std::size_t>(T * H), 0.0f);
  const std::string what = std::string("backend ") + api->name;
  struct input {
    moereg_tensor_view x, ids, wt;
    std::unique_ptr<device_buffer> dx, dids, dwt;
  };
  std::vector<input> in(rotations);
  moereg_tensor_view ov = contiguous_view(out.data(), dtype::F32, {T, H});
  std::unique_ptr<device_buffer> dout;
  auto upload = [&](std::unique_ptr<device_buffer>& buf, moereg_tensor_view& v, std::size_t bytes, bool copy_in) {
    buf = std::make_unique<device_buffer>(api, backend, bytes);
    if (copy_in) throw_if_error(api->copy(backend, buf->ptr, v.data, bytes, 0), what + ": upload");
    v.data = buf->ptr;
    v.memory = MOEREG_MEMORY_DEVICE;
  };
  for (std::size_t rot = 0; rot < rotations; ++rot) {
    input& i = in[rot];
    i.x = view_of(inputs, "x." + rotation_suffix(T, rot));
    i.ids = view_of(inputs, "ids." + rotation_suffix(T, rot));
    i.wt = view_of(inputs, "weights." + rotation_suffix(T, rot));
    if (!on_device) continue;
    upload(i.dx, i.x, static_cast<std::size_t>(T * H) * 2, true);
    upload(i.dids, i.ids, static_cast<std::size_t>(T * K) * 8, true);
    upload(i.dwt, i.wt, static_cast<std::size_t>(T * K) * 4, true);
  }
  if (on_device) upload(dout, ov, out.size() * 4, false);
  auto once = [&](std::size_t rot) {
    throw_if_error(api->forward(backend, &in[rot].x, &in[rot].ids, &in[rot].wt, &ov), what);
    if (on_device) throw_if_error(api->synchronize(backend), what);
  };
  for (std::size_t rot = 0; rot < rotations; ++rot) once(rot);  // warm-up (and scratch growth)
  std::vector<double> times;
  double total = 0;
  const std::size_t min_runs = std::max<std::size_t>(3, rotations);
  while (times.size() < min_runs || (total < min_seconds && times.size() < 100) || times.size() % rotations != 0) {
    const auto t0 = clock_type::now();
    once(times.size() % rotations);
    times.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
    total += times.back();
  }
  if (rotations > 1) once(0);
  std::sort(times.begin(), times.end());
  if (on_device) throw_if_error(api->copy(backend, out.data(), dout->ptr, out.size() * 4, 1), what + ": download");
  return times[times.size() / 2];
}

// The PyTorch reference on the same files: its seconds, the dense matmul, and how far the
// backend's outputs are from its outputs. Returns the torch version and threads.
std::string run_reference(const moe_bench_request& r, const std::string& python, const std::string& script,
                          const std::string& dir, int threads, bool on_cuda, const std::vector<std::vector<float>>& outputs,
                          std::vector<moe_bench_row>& rows) {
  std::string tok;
  for (auto T : r.tokens) tok += (tok.empty() ? "" : ",") + std::to_string(T);
  std::ostringstream cmd;
  cmd << "'" << python << "' '" << script << "' --weights '" << dir << "/weights.safetensors' --inputs '" << dir
      << "/inputs.safetensors' --outputs '" << dir << "/reference.safetensors' --tokens " << tok << " --threads " << threads
      << " --min-seconds " << r.min_seconds << " --max-seconds " << r.reference_max_seconds << " --device "
      << (on_cuda ? "cuda" : "cpu");
  spdlog::info("moe bench: reference: {}", cmd.str());
  int status = 0;
  const std::string text = run_capture(cmd.str(), status);
  if (status != 0) throw error("PyTorch reference failed (exit status " + std::to_string(status) + "): " + cmd.str());
  const json::value res = json::parse(text, "torch_reference.py output");
  safetensors_file ref(dir + "/reference.safetensors");
  for (const auto& row : res.find("rows")->as_array()) {
    const std::int64_t T = row.find("tokens")->as_int();
    const auto k = static_cast<std::size_t>(std::find(r.tokens.begin(), r.tokens.end(), T) - r.tokens.begin());
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
  return res.find("torch")->as_string() + ", " + std::to_string(res.find("threads")->as_int()) + " threads";
}

// The bench's own directory in `work`: moereg-bench-HOST-PID (the host, so that benches on
// several nodes can share a work directory on a shared filesystem).
std::string bench_dir_prefix() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !host[0]) std::snprintf(host, sizeof host, "localhost");
  return "moereg-bench-" + std::string(host) + "-";
}

// The file in a bench's directory that its process holds an exclusive flock on while it lives
// (the kernel drops the lock when the process dies, however it dies).
constexpr const char* bench_owner_file = ".owner";

// A bench killed before its cleanup (by the OOM killer, say) leaves its directory behind, tens
// of GB with the large presets, in memory where the work directory is a tmpfs: each one of
// this host whose owner lock can be taken (its process is gone, whatever PID namespace it ran
// in) is removed. One without an owner file is being made, and is kept, as are live ones and
// other hosts'.
void remove_stale_bench_dirs(const std::string& work) {
  const std::string prefix = bench_dir_prefix();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(work, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size() ||
        name.find_first_not_of("0123456789", prefix.size()) != std::string::npos || !e.is_directory(ec))
      continue;
    const int owner = ::open((e.path() / bench_owner_file).c_str(), O_RDONLY | O_CLOEXEC);
    if (owner < 0) continue;
    const bool held = ::flock(owner, LOCK_EX | LOCK_NB) != 0;
    ::close(owner);
    if (held) continue;
    std::error_code rm;
    const std::uintmax_t n = fs::remove_all(e.path(), rm);
    if (!rm) spdlog::info("moe bench: removed {} ({} files), left by a bench process that is gone", e.path().string(), n);
  }
}

moe_bench_report run_bench(const moe_bench_request& r) {
  check_request(r);
  const int threads = static_cast<int>(resolve_threads(r.threads));
  const std::string script = r.reference ? find_reference_script(r.reference_script) : "";
  // Before the weights are written: a missing PyTorch is reported at once.
  const std::string python = r.reference ? find_python(r.python) : "";
  std::unique_ptr<plugin_registry> registry = make_registry(r.plugin_paths);

  // Weights and inputs go to safetensors files that both moereg and PyTorch map.
  const std::string work = r.work_dir.empty() ? fs::temp_directory_path().string() : r.work_dir;
  std::error_code ec;
  if (fs::exists(work, ec) && !fs::is_directory(work, ec)) throw usage_error("--work-dir " + work + ": not a directory");
  remove_stale_bench_dirs(work);
  const std::string dir = work + "/" + bench_dir_prefix() + std::to_string(::getpid());
  if (fs::create_directories(dir, ec); ec) throw error("--work-dir " + work + ": cannot create " + dir + ": " + ec.message());
  struct cleanup {
    std::string d;
    int owner = -1;
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
      if (owner >= 0) ::close(owner);
    }
  } cleanup_dir{dir};
  // Held while this process lives: another bench's sweep leaves the directory alone.
  cleanup_dir.owner = ::open((dir + "/" + bench_owner_file).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (cleanup_dir.owner < 0 || ::flock(cleanup_dir.owner, LOCK_EX) != 0)
    throw error(dir + "/" + bench_owner_file + ": cannot create and lock: " + std::strerror(errno));
  const auto t_gen = clock_type::now();
  write_weights(dir + "/weights.safetensors", r, threads);
  safetensors_file weights(dir + "/weights.safetensors");
  spdlog::info("moe bench: {} weights written in {} ({})", r.shape,
               format_duration(std::chrono::duration<double>(clock_type::now() - t_gen).count()), human_bytes(weights.file_size()));
  moereg_moe_weights mw{};
  mw.num_experts = r.experts;
  mw.hidden = r.hidden;
  mw.intermediate = r.intermediate;
  if (r.weights == "f8_e4m3") {
    mw.w13 = view_of(weights, "w13_f8");
    mw.w2 = view_of(weights, "w2_f8");
    mw.w13_scale = view_of(weights, "w13_scale");
    mw.w2_scale = view_of(weights, "w2_scale");
    mw.scale_block[0] = mw.scale_block[1] = bench_fp8_block;
  } else {
    mw.w13 = view_of(weights, "w13");
    mw.w2 = view_of(weights, "w2");
  }
  if (r.shared_intermediate && r.weights == "f8_e4m3") {
    mw.shared_intermediate = r.shared_intermediate;
    mw.shared_w13 = view_of(weights, "shared_w13_f8");
    mw.shared_w2 = view_of(weights, "shared_w2_f8");
    mw.shared_w13_scale = view_of(weights, "shared_w13_scale");
    mw.shared_w2_scale = view_of(weights, "shared_w2_scale");
  } else if (r.shared_intermediate) {
    mw.shared_intermediate = r.shared_intermediate;
    mw.shared_w13 = view_of(weights, "shared_w13");
    mw.shared_w2 = view_of(weights, "shared_w2");
  }
  moereg_routing_params rp = r.routing;
  rp.num_experts = static_cast<std::int32_t>(r.experts);
  rp.top_k = static_cast<std::int32_t>(r.top_k);
  rp.router = view_of(weights, "router");
  router rt(rp, "shape " + r.shape);
  const std::uint64_t llc = last_level_cache_bytes();
  const std::vector<std::vector<routing_result>> routes = write_inputs(dir + "/inputs.safetensors", r, rt, llc);
  safetensors_file inputs(dir + "/inputs.safetensors");

  moereg_backend_options opts{};
  opts.threads = threads;
  std::unique_ptr<backend_instance> instance = create_backend(*registry, r.backend, mw, rp, opts, r.backend_options);
  spdlog::info("moe bench: backend {} ({})", instance->record().name, instance->why());
  const moereg_backend_api* api = &instance->api();
  moe_bench_report rep;
  rep.backend = api->name;
  rep.why = instance->why();
  rep.backend_library = instance->record().library_path;
  rep.describe = instance->describe();
  rep.threads = threads;
  // A backend with its own memory is timed the way an engine uses it: inputs and outputs
  // already on the device, the call followed by a synchronize.
  rep.on_device = api->alloc && api->free && api->copy && api->synchronize;
  rep.last_level_cache = llc;
  if (rep.on_device) {
    rep.bandwidth = measure_device_bandwidth(api, instance->handle());
  } else {
    const read_bandwidth bw = measure_read_bandwidth(threads);
    rep.bandwidth = bw.best;
    for (const auto& p : bw.patterns) {
      rep.read_patterns.emplace_back(p.name, p.bytes_per_second);
      spdlog::info("moe bench: read pattern '{}': {} (median of {}; slowest / fastest {:.2f})", p.name,
                   format_rate(p.bytes_per_second), read_reps, p.spread);
    }
    rep.bandwidth_doubt = bw.doubt;
    if (!bw.doubt.empty()) spdlog::warn("moe bench: the read bandwidth is not trusted, no \"of bw\" given: {}", bw.doubt);
  }
  spdlog::info("moe bench: {} bandwidth {}", rep.on_device ? "device copy (read + write)" : "read", format_rate(rep.bandwidth));

  const double per_expert = expert_bytes(r, rep.describe);
  // An F8 shared expert streams a byte a weight and an F32 scale per 128 x 128 block.
  const double shared_bytes = static_cast<double>(3 * r.shared_intermediate * r.hidden) *
                              (r.weights == "f8_e4m3" ? 1.0 + 4.0 / (bench_fp8_block * bench_fp8_block) : 2.0);
  std::vector<std::vector<float>> outputs(r.tokens.size());
  for (std::size_t i = 0; i < r.tokens.size(); ++i) {
    moe_bench_row row;
    row.tokens = r.tokens[i];
    std::set<std::int64_t> cycle;
    for (const routing_result& rr : routes[i]) {
      const std::set<std::int64_t> hit(rr.ids.begin(), rr.ids.end());
      row.weight_bytes += static_cast<double>(hit.size()) * per_expert + shared_bytes;
      cycle.insert(hit.begin(), hit.end());
    }
    row.rotations = static_cast<std::int64_t>(routes[i].size());
    row.weight_bytes /= static_cast<double>(row.rotations);
    row.cycle_bytes = static_cast<double>(cycle.size()) * per_expert + shared_bytes;
    row.flops = 2.0 * 3 * static_cast<double>(r.hidden) *
                (static_cast<double>(row.tokens * r.top_k * r.intermediate) + static_cast<double>(row.tokens * r.shared_intermediate));
    row.seconds = time_forward(api, instance->handle(), rep.on_device, inputs, row.tokens, routes[i].size(), r.hidden, r.top_k,
                               r.min_seconds, outputs[i]);
    rep.rows.push_back(row);
  }
  if (r.reference)
    rep.torch = run_reference(r, python, script, dir, threads, rep.on_device && rep.backend == "cuda", outputs, rep.rows);
  return rep;
}

}  // namespace

result<moe_bench_report> bench_moe(const moe_bench_request& request) noexcept {
  return guarded([&] { return run_bench(request); });
}

}  // namespace moereg::app
