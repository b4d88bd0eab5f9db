// SPDX-License-Identifier: Apache-2.0
// engine_bench.cpp - times a cpu backend library through its C ABI on synthetic bf16 experts
// (E, H, I, K as given; random distinct expert ids, bf16 input) and prints, per T, the wall
// time and the process CPU time of one forward. On a shared machine the CPU-time GFLOP/s
// (FLOPs / CPU seconds of all the backend's threads) moves far less with the load than the
// wall figure, so two libraries can be compared at different moments.
//
//   g++ -std=c++20 -O2 -Icore/include bench/cpu/engine_bench.cpp -o /tmp/engine_bench -ldl
//   /tmp/engine_bench build/lib/moereg/backends/libmoereg_backend_cpu.so 128 2048 768 8 1 16 128 1024
#include <dlfcn.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "moereg/abi/moereg_backend.h"

namespace {

moereg_status* report(int32_t, const char* message) noexcept {
  std::fprintf(stderr, "backend: %s\n", message);
  return reinterpret_cast<moereg_status*>(1);  // never freed: the bench exits on any status
}
void no_log(int32_t, const char*) noexcept {}
const moereg_host_api host = {MOEREG_PLUGIN_API_VERSION, &report, &no_log};

double seconds(clockid_t clock) {
  timespec t;
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

moereg_tensor_view view(void* data, int32_t type, std::vector<int64_t> shape) {
  moereg_tensor_view v{};
  v.data = data;
  v.dtype = type;
  v.rank = static_cast<int32_t>(shape.size());
  v.memory = MOEREG_MEMORY_HOST;
  int64_t stride = 1;
  for (int i = v.rank - 1; i >= 0; --i) {
    v.shape[i] = shape[static_cast<std::size_t>(i)];
    v.strides[i] = stride;
    stride *= v.shape[i];
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s LIB E H I K T...\n", argv[0]);
    return 2;
  }
  const int64_t E = std::atoll(argv[2]), H = std::atoll(argv[3]), I = std::atoll(argv[4]), K = std::atoll(argv[5]);
  void* lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) {
    std::fprintf(stderr, "%s\n", dlerror());
    return 1;
  }
  auto entry = reinterpret_cast<moereg_backend_entry_fn>(dlsym(lib, MOEREG_BACKEND_ENTRY_SYMBOL));
  const moereg_backend_api* api = entry ? entry(&host) : nullptr;
  if (!api) return 1;
  // Weights of magnitude ~0.01 with varied low bits; the values do not change the speed.
  std::vector<uint16_t> w13(static_cast<std::size_t>(E * 2 * I * H)), w2(static_cast<std::size_t>(E * H * I));
  for (std::size_t i = 0; i < w13.size(); ++i) w13[i] = static_cast<uint16_t>(0x3c00 | ((i * 2654435761u) >> 28));
  for (std::size_t i = 0; i < w2.size(); ++i) w2[i] = static_cast<uint16_t>(0x3c00 | ((i * 2654435761u) >> 28));
  moereg_moe_weights w{};
  w.num_experts = E;
  w.hidden = H;
  w.intermediate = I;
  w.w13 = view(w13.data(), MOEREG_DTYPE_BF16, {E, 2 * I, H});
  w.w2 = view(w2.data(), MOEREG_DTYPE_BF16, {E, H, I});
  moereg_routing_params routing{};
  moereg_backend_options options{};
  moereg_backend* b = nullptr;
  if (api->create(&w, &routing, &options, &b)) return 1;
  std::mt19937 rng(1);
  for (int a = 6; a < argc; ++a) {
    const int64_t T = std::atoll(argv[a]);
    std::vector<uint16_t> x(static_cast<std::size_t>(T * H), 0x3f80);
    std::vector<int32_t> ids(static_cast<std::size_t>(T * K));
    std::vector<float> weights(ids.size(), 0.1f), out(x.size());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k) {
        int32_t e;
        bool taken;
        do {
          e = static_cast<int32_t>(rng() % static_cast<uint32_t>(E));
          taken = false;
          for (int64_t j = 0; j < k; ++j) taken = taken || ids[static_cast<std::size_t>(t * K + j)] == e;
        } while (taken);
        ids[static_cast<std::size_t>(t * K + k)] = e;
      }
    moereg_tensor_view xv = view(x.data(), MOEREG_DTYPE_BF16, {T, H}), iv = view(ids.data(), MOEREG_DTYPE_I32, {T, K});
    moereg_tensor_view wv = view(weights.data(), MOEREG_DTYPE_F32, {T, K}), ov = view(out.data(), MOEREG_DTYPE_F32, {T, H});
    if (api->forward(b, &xv, &iv, &wv, &ov)) return 1;  // warm-up
    const double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
    int runs = 0;
    do {
      api->forward(b, &xv, &iv, &wv, &ov);
      ++runs;
    } while (seconds(CLOCK_MONOTONIC) - w0 < 1.0 || runs < 2);
    const double wall = (seconds(CLOCK_MONOTONIC) - w0) / runs, cpu = (seconds(CLOCK_PROCESS_CPUTIME_ID) - c0) / runs;
    const double flops = 2.0 * static_cast<double>(T * K * 3 * I * H);
    std::printf("T=%5lld wall %9.2f ms  cpu %9.2f ms  wall GFLOP/s %6.1f  CPU-time GFLOP/s %6.1f\n",
                static_cast<long long>(T), wall * 1e3, cpu * 1e3, flops / wall * 1e-9, flops / cpu * 1e-9);
  }
  api->destroy(b);
  return 0;
}
