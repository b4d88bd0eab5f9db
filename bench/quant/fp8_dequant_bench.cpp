// fp8_dequant_bench.cpp - FP8 E4M3 -> bf16 dequantization speed, one thread, on DeepSeek-V3-sized
// matrices (128x128 block scales, and per-channel scales). Not built by CMake:
//   g++ -std=c++20 -O2 -Icore/include bench/quant/fp8_dequant_bench.cpp build/core/libmoereg_core.a -o /tmp/fp8_dequant_bench
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "moereg/quant/fp8_e4m3.h"
#include "moereg/quant/scale_grid.h"
using namespace moereg;
int main() {
  for (auto shape : std::vector<std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>>>{{{2048, 7168}, {16, 56}}, {{2048, 7168}, {2048, 1}}}) {
    scale_grid g = classify_fp8_scale("w.weight_scale_inv", shape.first, shape.second);
    if (shape.second[1] == 1) g = classify_fp8_scale("w.weight_scale", shape.first, shape.second);
    std::size_t n = g.batch * g.rows * g.cols;
    std::vector<std::uint8_t> w(n); std::mt19937 rng(1); for (auto& b : w) b = rng();
    std::vector<float> s(g.batch * g.scales_per_matrix(), 0.01f);
    std::vector<std::uint16_t> out(n);
    dequantize_fp8_e4m3(w.data(), s, g, out.data());
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) dequantize_fp8_e4m3(w.data(), s, g, out.data());
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 3;
    unsigned sum = 0; for (auto v : out) sum += v;
    std::printf("%s: %.1f MB/s of fp8 in (one thread) sum %u\n", g.describe().c_str(), n / sec / 1e6, sum);
  }
}
