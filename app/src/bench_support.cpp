// SPDX-License-Identifier: Apache-2.0
#include "bench_support.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "free_space.h"
#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/base/units.h"
#include "moereg/registry/plugin_registry.h"
#include "moereg/tensor/dtype.h"

namespace moereg::app {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string exe_dir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : p.parent_path().string();
}

}  // namespace

void fill_bf16(std::uint16_t* out, std::size_t n, float scale, std::uint64_t seed) {
  std::uint64_t s = seed;
  for (std::size_t i = 0; i < n; ++i) {
    double u = (static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53) * 2 - 1;
    float v = static_cast<float>(u * 1.7320508 * scale);
    std::uint16_t b = f32_to_bf16(v);
    out[i] = (b & 0x7FFF) ? b : 0x3C00;  // 0.0078125 instead of a zero
  }
}

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

device_buffer::device_buffer(const moereg_backend_api* a, moereg_backend* b, std::size_t bytes) : api(a), backend(b) {
  throw_if_error(api->alloc(backend, bytes, &ptr), std::string("backend ") + api->name + ": allocate " + std::to_string(bytes) + " bytes");
}

double measure_device_bandwidth(const moereg_backend_api* api, moereg_backend* backend) {
  const std::size_t bytes = 1ull << 30;
  device_buffer a(api, backend, bytes), b(api, backend, bytes);
  const std::string what = std::string("backend ") + api->name + ": bandwidth probe";
  throw_if_error(api->copy(backend, b.ptr, a.ptr, bytes, 2), what);
  throw_if_error(api->synchronize(backend), what);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = clock_type::now();
    throw_if_error(api->copy(backend, b.ptr, a.ptr, bytes, 2), what);
    throw_if_error(api->synchronize(backend), what);
    best = std::max(best, 2.0 * static_cast<double>(bytes) / std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  return best;
}

std::string find_python(const std::string& given) {
  // PyTorch is not among moereg's own dependencies (scripts/install-deps.sh leaves it out).
  const std::string get_it =
      "; install it (Debian 12: apt-get install python3-torch, or scripts/install-test-deps.sh in a moereg source "
      "tree), or pass --python PATH to a python that has it, or --no-reference to time moereg alone";
  auto imports_torch = [](const std::string& python) {
    std::string cmd = "'" + python + "' -c 'import torch' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  };
  if (!given.empty()) {
    if (!imports_torch(given)) throw error("--python " + given + ": cannot import torch" + get_it);
    return given;
  }
  for (const char* candidate : {"python3", "/usr/bin/python3"})
    if (imports_torch(candidate)) return candidate;
  throw error("the PyTorch reference needs python3 with torch, found none (tried python3 on PATH and /usr/bin/python3)" +
              get_it);
}

std::string find_reference_script(const std::string& given) {
  if (!given.empty()) return given;
  for (const std::string& p : {exe_dir() + "/../share/moereg/bench/moe/torch_reference.py",
                               exe_dir() + "/../../bench/moe/torch_reference.py", std::string("bench/moe/torch_reference.py")})
    if (fs::exists(p)) return fs::weakly_canonical(p).string();
  throw error("bench/moe/torch_reference.py not found beside the binary; pass --reference-script PATH or --no-reference");
}

void check_room(const std::string& dir, std::uint64_t bytes, const std::string& what) {
  if (const auto room = free_bytes(dir); room && bytes > *room)
    throw error(what + ": " + format_bytes(bytes) + " to write in " + dir + ", whose filesystem has " + format_bytes(*room) +
                " free; pass --work-dir on a larger one, or take a smaller preset");
  if (!on_tmpfs(dir)) return;
  // The bench needs memory beside the file (its inputs and outputs, a backend's own copy of
  // the weights): at least 2 GiB or an eighth of the file more.
  const std::uint64_t beside = std::max<std::uint64_t>(bytes / 8, std::uint64_t{2} << 30);
  if (const auto mem = memory_available(); mem && bytes + beside > *mem)
    throw error(what + ": " + format_bytes(bytes) + " to write in " + dir + ", a tmpfs (its files live in memory): that and the " +
                format_bytes(beside) + " the bench needs beside it exceed the " + format_bytes(*mem) +
                " of memory available; pass --work-dir on a disk, or take a smaller preset");
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

}  // namespace moereg::app
