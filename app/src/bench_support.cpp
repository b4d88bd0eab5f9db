// SPDX-License-Identifier: Apache-2.0
#include "bench_support.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

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

// Read the way the backend reads its weights at T = 1: every thread streaming its own share
// of a buffer far larger than the caches, threads pinned one per allowed CPU, the buffer's
// pages first touched by the thread that reads them (so each lies in its reader's NUMA node)
// and backed by 2 MiB pages where the kernel allows, several independent sums per thread so
// loads are not serialized, the threads started once and timed between two barriers. The old
// probe (one thread touching a vector, scalar sums, threads created inside the timing) read
// 1.5-2x slower than the kernel did on a 16-core Xeon, so T = 1 rows showed 150-199 % "of bw".
// The buffer is eight times the last-level cache (at least 256 MiB, at most 2 GiB, 2 GiB when
// the cache size is unknown): streaming reads over it never hit the cache, and the probe costs
// a quarter second rather than the seconds a fixed 2 GiB costs on a small machine.
namespace {
std::size_t probe_bytes() {
  const long llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
  const std::size_t lo = std::size_t{256} << 20, hi = std::size_t{2} << 30;
  if (llc <= 0) return hi;
  return std::clamp(static_cast<std::size_t>(llc) * 8, lo, hi);
}
}  // namespace

double measure_read_bandwidth(int threads) {
  const std::size_t bytes = probe_bytes(), n = bytes / 8;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw error("bandwidth probe: cannot map " + std::to_string(bytes) + " bytes");
  struct unmap {
    void* p;
    std::size_t b;
    ~unmap() { ::munmap(p, b); }
  } guard{mem, bytes};
  ::madvise(mem, bytes, MADV_HUGEPAGE);
  auto* buf = static_cast<std::uint64_t*>(mem);
  std::vector<int> cpus;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  constexpr int reps = 5;
  std::barrier sync(threads + 1);
  std::vector<std::uint64_t> sums(static_cast<std::size_t>(threads) * reps, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      if (!cpus.empty()) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[static_cast<std::size_t>(t) % cpus.size()], &one);
        ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one);
      }
      const std::size_t b = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads) / 8 * 8;
      const std::size_t e = t + 1 == threads ? n : n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads) / 8 * 8;
      for (std::size_t i = b; i < e; ++i) buf[i] = 1;  // first touch by the reader
      for (int rep = 0; rep < reps; ++rep) {
        sync.arrive_and_wait();
        std::uint64_t s[8] = {};
        for (std::size_t i = b; i + 8 <= e; i += 8)
          for (int j = 0; j < 8; ++j) s[j] += buf[i + static_cast<std::size_t>(j)];
        sums[static_cast<std::size_t>(rep * threads + t)] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
        sync.arrive_and_wait();
      }
    });
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    sync.arrive_and_wait();
    const auto t0 = clock_type::now();
    sync.arrive_and_wait();
    best = std::max(best, static_cast<double>(bytes) / std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  for (auto& t : pool) t.join();
  for (int rep = 0; rep < reps; ++rep) {
    std::uint64_t total = 0;
    for (int t = 0; t < threads; ++t) total += sums[static_cast<std::size_t>(rep * threads + t)];
    if (total != n) throw error("bandwidth probe: read back a wrong sum");
  }
  return best;
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
