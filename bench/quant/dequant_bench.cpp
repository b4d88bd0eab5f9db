// SPDX-License-Identifier: Apache-2.0
// dequant_bench.cpp - dequantization to bf16, one thread, on DeepSeek-V3-sized matrices
// (2048 x 7168): FP8 E4M3 with 128x128 block scales and with per-channel scales, MXFP4
// (32-element groups), symmetric int4 pack-quantized and GPTQ (128-element groups). Not built by CMake:
//   g++ -std=c++20 -O2 -Icore/include bench/quant/dequant_bench.cpp build/core/libmoereg_core.a -o /tmp/dequant_bench
// Prints MB/s of bf16 written, and a checksum (equal before and after a change that must
// not alter results).
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "moereg/quant/fp8_e4m3.h"
#include "moereg/quant/gptq_int4.h"
#include "moereg/quant/mxfp4.h"
#include "moereg/quant/pack_quantized_int4.h"
#include "moereg/quant/scale_grid.h"

using namespace moereg;

template <class F>
void report(const char* name, std::size_t elements, const std::vector<std::uint16_t>& out, F run) {
  run();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) run();
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 3;
  unsigned sum = 0;
  for (auto v : out) sum += v;
  std::printf("%-34s %8.0f MB/s of bf16  checksum %u\n", name, 2.0 * elements / sec / 1e6, sum);
}

int main() {
  const std::int64_t rows = 2048, cols = 7168;
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  std::mt19937 rng(1);
  std::vector<std::uint8_t> bytes(n);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  std::vector<std::uint16_t> out(n);
  for (bool blocks : {true, false}) {
    std::vector<std::int64_t> ws{rows, cols}, ss = blocks ? std::vector<std::int64_t>{16, 56} : std::vector<std::int64_t>{rows, 1};
    scale_grid g = classify_fp8_scale(blocks ? "w.weight_scale_inv" : "w.weight_scale", ws, ss);
    std::vector<float> s(static_cast<std::size_t>(g.scales_per_matrix()), 0.01f);
    report(("fp8, " + g.describe()).c_str(), n, out, [&] { dequantize_fp8_e4m3(bytes.data(), s, g, out.data()); });
  }
  {
    std::vector<std::int64_t> ws{rows, cols / 2}, ss{rows, cols / 32};
    mxfp4_shape shape = check_mxfp4_shapes("w", ws, ss);
    std::vector<std::uint8_t> scales(static_cast<std::size_t>(rows * cols / 32));
    for (auto& u : scales) u = static_cast<std::uint8_t>(110 + rng() % 30);
    report("mxfp4, 32-element groups", n, out, [&] { dequantize_mxfp4(bytes.data(), scales.data(), shape, out.data()); });
  }
  {
    std::vector<std::int64_t> ps{rows, cols / 8}, ss{rows, cols / 128};
    pack_quantized_shape shape = check_pack_quantized_shapes("w", ps, ss, rows, cols, 128);
    std::vector<float> scales(static_cast<std::size_t>(rows * cols / 128), 0.01f);
    report("int4 pack-quantized, groups of 128", n, out,
           [&] { dequantize_pack_quantized_int4(bytes.data(), scales, shape, out.data()); });
  }
  {
    std::vector<std::int64_t> qs{cols / 8, rows}, ss{cols / 128, rows};
    gptq_shape shape = check_gptq_shapes("w", qs, ss, 128);
    std::vector<float> scales(static_cast<std::size_t>(rows * cols / 128), 0.01f);
    report("int4 GPTQ, groups of 128", n, out, [&] { dequantize_gptq_int4(bytes.data(), scales, shape, out.data()); });
  }
}
