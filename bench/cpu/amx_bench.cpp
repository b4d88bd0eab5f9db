// SPDX-License-Identifier: Apache-2.0
// amx_bench.cpp - what the AMX unit of this machine does per core and across cores, in the
// CPU backend's block shape (4 accumulators, 2 weight tiles x 2 activation tiles per step).
// A standalone yardstick for the engine's GFLOP/s (docs/bench-cpu.md), not built by CMake:
//
//   g++ -std=c++20 -O2 -mamx-tile -mamx-bf16 bench/cpu/amx_bench.cpp -o amx_bench -lpthread
//   ./amx_bench [threads]
//
// Cases: tdpbf16ps alone (tiles loaded once), then the same with the four tile loads of
// each step from L1-resident data (64-byte aligned, then 16 bytes off), from a 4 KiB-strided A (rows of a weight matrix in place,
// every row in one L1 set), and from a 1 MiB working set (L2).
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

struct alignas(64) tile_config {
  std::uint8_t palette, start_row, reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};
constexpr tile_config cfg = {1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

enum mode { compute_only, l1, l1_off16, a_strided, l2, modes };
const char* names[] = {"tdpbf16ps only (no loads)", "loads from L1 (2 KiB A + 2 KiB B per step)",
                       "the same, tiles 16 bytes off a cache line", "A rows 4 KiB apart (in place)",
                       "loads from a 1 MiB set (L2)"};

double run(mode m, std::int64_t steps) {
  __asm__ volatile("" ::: "memory");
  _tile_loadconfig(&cfg);
  // A: 2 tiles; B: 2 tiles; both repeated over `span` steps then wrapped.
  const std::int64_t span = m == l2 ? 256 : 1;  // 256 steps x 4 KiB = 1 MiB
  const std::int64_t a_stride = m == a_strided ? 4096 : 64;
  const std::int64_t a_bytes = m == a_strided ? 2 * 16 * 4096 + 4096 : 2048 * span;
  // Every tile row 64 bytes from a line boundary on, or 16 bytes off one (std::vector's
  // alignment: each row then spans two lines; the engine's scratch is line_vector for this).
  const std::int64_t off = m == l1_off16 ? 16 : 0;
  std::vector<std::uint16_t> a(static_cast<std::size_t>((a_bytes + 128) / 2), 0x3c00);
  std::vector<std::uint16_t> b(static_cast<std::size_t>((2 * 1024 * span + 128) / 2), 0x3c00);
  alignas(64) float c[4][256] = {};
  auto at = [&](std::vector<std::uint16_t>& v) {
    const auto p = reinterpret_cast<std::uintptr_t>(v.data());
    return reinterpret_cast<const char*>((p + 63) / 64 * 64 + off);
  };
  const char* pa = at(a);
  const char* pb = at(b);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, pa, a_stride);
  _tile_loadd(5, pa + 1024, 64);
  _tile_loadd(6, pb, 64);
  _tile_loadd(7, pb + 1024, 64);
  auto t0 = std::chrono::steady_clock::now();
  for (std::int64_t s = 0; s < steps; ++s) {
    if (m != compute_only) {
      const std::int64_t w = s % span;
      const char* as = m == a_strided ? pa + 64 * (s % 64) : pa + 2048 * w;
      _tile_loadd(4, as, a_stride);
      _tile_loadd(6, pb + 2048 * w, 64);
      _tile_loadd(5, m == a_strided ? as + 16 * 4096 : as + 1024, a_stride);
      _tile_loadd(7, pb + 2048 * w + 1024, 64);
    }
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  _tile_stored(0, c[0], 64);
  _tile_release();
  return 4.0 * 2 * 16 * 16 * 32 * static_cast<double>(steps) / sec;  // FLOP/s
}

}  // namespace

int main(int argc, char** argv) {
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) {
    std::fprintf(stderr, "no AMX tile permission (arch_prctl)\n");
    return 1;
  }
  const int threads = argc > 1 ? std::atoi(argv[1]) : static_cast<int>(std::thread::hardware_concurrency());
  const std::int64_t steps = 2'000'000;
  std::printf("%-48s %14s %16s\n", "case", "1 thread GF/s", "all threads GF/s");
  for (int m = 0; m < modes; ++m) {
    double one = run(static_cast<mode>(m), steps);
    std::vector<double> r(static_cast<std::size_t>(threads));
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { r[static_cast<std::size_t>(t)] = run(static_cast<mode>(m), steps); });
    for (auto& t : ts) t.join();
    double all = 0;
    for (double v : r) all += v;
    std::printf("%-48s %14.0f %16.0f  (%d threads)\n", names[m], one / 1e9, all / 1e9, threads);
  }
}
