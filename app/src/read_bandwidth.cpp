// SPDX-License-Identifier: Apache-2.0
#include "read_bandwidth.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <thread>

#include "moereg/base/error.h"

namespace moereg::app {

namespace {

// One thread's share [b, e) of the buffer (a multiple of 64 words) read as `streams`
// interleaved sequential streams, each eight words (a cache line) per step, with a software
// prefetch `prefetch_lines` lines ahead on each into L1, and `l2_lines` ahead into L2 only.
// Eight independent sums keep loads in flight.
template <int streams, int prefetch_lines, int l2_lines = 0>
std::uint64_t read_share(const std::uint64_t* buf, std::size_t b, std::size_t e) {
  const std::size_t len = (e - b) / streams;
  std::uint64_t s[8] = {};
  for (std::size_t i = 0; i < len; i += 8)
    for (int k = 0; k < streams; ++k) {
      const std::uint64_t* p = buf + b + static_cast<std::size_t>(k) * len + i;
      if constexpr (prefetch_lines > 0) __builtin_prefetch(p + 8 * prefetch_lines, 0, 3);
      if constexpr (l2_lines > 0) __builtin_prefetch(p + 8 * l2_lines, 0, 2);
      for (int j = 0; j < 8; ++j) s[j] += p[j];
    }
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

struct pattern {
  const char* name;
  std::uint64_t (*read)(const std::uint64_t*, std::size_t, std::size_t);
};

// Why several patterns: one sequential stream per thread relies on the hardware prefetchers
// alone, and on a mesh Xeon one core's stream then tops out well below its share of the
// memory (the probe of session 6 read 91-99 GB/s where the AMX kernel, which prefetches its
// tiles two steps ahead in software, streamed mixtral's 704 MB per T = 1 forward at 150-172
// GB/s: far more bytes than any L3 holds, so not a cache effect). Four streams, as the kernel
// reads gate and up tiles of two row blocks, and software prefetch cover that; the best
// pattern is the ceiling, and each one's rate is reported so a run shows which mattered.
constexpr pattern patterns[] = {
    {"1 stream", &read_share<1, 0>},
    {"1 stream, prefetch 1 KiB", &read_share<1, 16>},
    {"4 streams", &read_share<4, 0>},
    {"4 streams, prefetch 2 KiB", &read_share<4, 32>},
    // As the AMX kernel streams an item's tiles: near lines into L1, the next block's into L2
    // (prefetcht1), which keeps more misses in flight than L1's fill buffers allow.
    {"1 stream, prefetch 1 KiB + L2 8 KiB", &read_share<1, 16, 128>},
};

constexpr std::uint64_t probe_multiplier = 0x9E3779B97F4A7C15ull;  // odd: i -> i * m is a bijection
std::uint64_t probe_word(std::size_t i) { return static_cast<std::uint64_t>(i) * probe_multiplier; }

std::size_t probe_bytes() {
  const std::uint64_t llc = last_level_cache_bytes();
  const std::size_t lo = std::size_t{256} << 20, hi = std::size_t{2} << 30;
  if (llc == 0) return hi;
  return std::clamp(static_cast<std::size_t>(llc) * 8, lo, hi);
}

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  return cpus;
}

// "32768K" or "1M" as sysfs writes cache sizes; 0 when unreadable.
std::uint64_t parse_cache_size(const std::string& text) {
  std::size_t used = 0;
  std::uint64_t v = 0;
  try {
    v = std::stoull(text, &used);
  } catch (const std::exception&) {
    return 0;
  }
  const char unit = used < text.size() ? text[used] : ' ';
  return unit == 'K' ? v << 10 : unit == 'M' ? v << 20 : unit == 'G' ? v << 30 : v;
}

}  // namespace

std::uint64_t last_level_cache_bytes() {
  std::map<std::string, std::uint64_t> l3;  // by instance id: CPUs of one L3 share it
  for (int c : allowed_cpus()) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/cache/index3/";
    std::ifstream level(dir + "level"), id(dir + "id"), size(dir + "size");
    int lv = 0;
    std::string i, s;
    if (!(level >> lv) || lv != 3 || !(id >> i) || !(size >> s)) continue;
    l3[i] = parse_cache_size(s);
  }
  std::uint64_t total = 0;
  for (const auto& [i, bytes] : l3) total += bytes;
  if (total) return total;
  const long llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
  return llc > 0 ? static_cast<std::uint64_t>(llc) : 0;
}

std::vector<double> time_phases(int threads, std::size_t phases, const std::function<void(int)>& setup,
                                const std::function<void(int, std::size_t)>& work) {
  using clock = std::chrono::steady_clock;
  std::vector<clock::time_point> stamps(2 * phases);  // each phase's start and end
  std::size_t at = 0;
  // Run by the last thread to arrive, before any is released. (Until session 24 the probe's
  // calling thread took the times as one more party to the barriers; with a reader pinned on
  // each of 16 CPUs it often got a CPU only once a read was under way, took its start late,
  // and the probe "read" 0.2-6.5 TB/s on the GPU machine's 16-core VM: sessions 14 and 24.)
  auto stamp = [&stamps, &at]() noexcept {
    if (at < stamps.size()) stamps[at] = clock::now();
    ++at;
  };
  std::barrier sync(threads, stamp);
  const std::vector<int> cpus = allowed_cpus();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      if (!cpus.empty()) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[static_cast<std::size_t>(t) % cpus.size()], &one);
        ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one);
      }
      setup(t);
      for (std::size_t p = 0; p < phases; ++p) {
        sync.arrive_and_wait();
        work(t, p);
        sync.arrive_and_wait();
      }
    });
  for (auto& t : pool) t.join();
  std::vector<double> seconds(phases);
  for (std::size_t p = 0; p < phases; ++p) seconds[p] = std::chrono::duration<double>(stamps[2 * p + 1] - stamps[2 * p]).count();
  return seconds;
}

// Every thread streams its own share of a buffer far larger than the caches, pinned one per
// allowed CPU, the share's pages first touched by their reader (so they lie in its NUMA node)
// and backed by 2 MiB pages where the kernel allows; each pattern is read five times
// (summarize_reads takes the median), each read timed by time_phases.
read_bandwidth measure_read_bandwidth(int threads) {
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
  constexpr std::size_t reps = read_reps, count = std::size(patterns);
  const auto T = static_cast<std::size_t>(threads);
  // Shares are whole multiples of 64 words, so four streams of whole lines cover them.
  auto share = [&](int t) {
    const auto ut = static_cast<std::size_t>(t);
    return std::pair<std::size_t, std::size_t>{n * ut / T / 64 * 64, ut + 1 == T ? n : n * (ut + 1) / T / 64 * 64};
  };
  std::vector<std::uint64_t> sums(T * reps * count, 0);
  const std::vector<double> seconds = time_phases(
      threads, count * reps,
      [&](int t) {
        // First touch by the reader. Every word differs, as in the weights the kernels read:
        // from an all-ones buffer a 16-core VM "read" 0.5-1.8 TB/s, far above what its memory
        // delivers (pages of identical words merged by the hypervisor, we suspect).
        const auto [b, e] = share(t);
        for (std::size_t i = b; i < e; ++i) buf[i] = probe_word(i);
      },
      [&](int t, std::size_t k) {
        const auto [b, e] = share(t);
        sums[k * T + static_cast<std::size_t>(t)] = patterns[k / reps].read(buf, b, e);
      });
  read_bandwidth out;
  for (std::size_t p = 0; p < count; ++p) {
    out.patterns.push_back(summarize_reads(patterns[p].name, static_cast<double>(bytes),
                                           std::vector<double>(seconds.begin() + p * reps, seconds.begin() + (p + 1) * reps)));
    out.best = std::max(out.best, out.patterns.back().bytes_per_second);
  }
  // The words sum (mod 2^64) to m * n(n - 1)/2: a pattern that skipped or repeated a line fails.
  const std::uint64_t expected = probe_multiplier * (n % 2 ? static_cast<std::uint64_t>(n) * ((n - 1) / 2)
                                                           : static_cast<std::uint64_t>(n / 2) * (n - 1));
  for (std::size_t k = 0; k < count * reps; ++k) {
    std::uint64_t total = 0;
    for (std::size_t t = 0; t < T; ++t) total += sums[k * T + t];
    if (total != expected)
      throw error(std::string("bandwidth probe: pattern '") + patterns[k / reps].name + "' read back a sum of " +
                  std::to_string(total) + ", expected " + std::to_string(expected) + " (every word once)");
  }
  out.doubt = doubt_about(out, threads);
  return out;
}

read_pattern_rate summarize_reads(std::string name, double bytes, std::vector<double> seconds) {
  read_pattern_rate r;
  r.name = std::move(name);
  if (seconds.empty()) return r;
  std::sort(seconds.begin(), seconds.end());
  const std::size_t n = seconds.size();
  const double median = n % 2 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
  r.bytes_per_second = median > 0 ? bytes / median : 0;
  r.spread = seconds.front() > 0 ? seconds.back() / seconds.front() : 0;
  return r;
}

std::string doubt_about(const read_bandwidth& bw, int threads) {
  const read_pattern_rate* top = nullptr;
  for (const auto& p : bw.patterns)
    if (!top || p.bytes_per_second > top->bytes_per_second) top = &p;
  if (!top || !(bw.best > 0)) return "no pattern was timed";
  auto gbps = [](double v) {
    char s[32];
    std::snprintf(s, sizeof s, "%.1f GB/s", v / 1e9);
    return std::string(s);
  };
  const double per_thread = bw.best / std::max(threads, 1);
  if (per_thread > max_thread_read_rate)
    return gbps(bw.best) + " over " + std::to_string(threads) + " threads is " + gbps(per_thread) +
           " per thread from a buffer eight times the last-level cache, more than a core reads from memory: the clock "
           "or the timing is off";
  if (!(top->spread <= max_read_spread)) {
    char s[160];
    std::snprintf(s, sizeof s, "pattern '%s': its five timed reads spread %.1f-fold (more than %.0f): the machine was busy "
                  "or its clock unsteady", top->name.c_str(), top->spread, max_read_spread);
    return s;
  }
  return "";
}

}  // namespace moereg::app
