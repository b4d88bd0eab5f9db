// SPDX-License-Identifier: Apache-2.0
// tile_bench.cpp - one thread runs each AVX2 tile of the cpu backend over 64 activation rows
// x 64 weight rows of K elements (all in L2, as in the engine's K passes) and prints GFLOP/s
// per second of the thread's own CPU time, so the figure holds on a loaded machine.
//
//   cd backends/cpu
//   g++ -std=c++20 -O3 -c cpu_kernels_avx2.cpp -mavx2 -mfma -mf16c -o /tmp/k_avx2.o
//   g++ -std=c++20 -O3 -c cpu_kernels_scalar.cpp -o /tmp/k_scalar.o
//   g++ -std=c++20 -O3 -I. ../../bench/cpu/tile_bench.cpp /tmp/k_avx2.o /tmp/k_scalar.o -o /tmp/tile_bench
//   /tmp/tile_bench 1024
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cpu_kernels.h"

using namespace moereg::cpu;

static double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int main(int argc, char** argv) {
  kernel_table kt;
  fill_avx2(kt);
  const int K = argc > 1 ? std::atoi(argv[1]) : 1024, R = 64, NB = 64;
  std::vector<float> af(static_cast<std::size_t>(R * K)), bf(static_cast<std::size_t>(NB * K));
  std::vector<std::uint16_t> ab(af.size(), 0x3f80), bb(bf.size(), 0x3f80);
  for (std::size_t i = 0; i < af.size(); ++i) af[i] = 0.001f * static_cast<float>(i % 97);
  for (std::size_t i = 0; i < bf.size(); ++i) bf[i] = 0.001f * static_cast<float>(i % 89);
  const char* names[] = {"f32 x f32", "bf16 x bf16", "f32 x bf16"};
  float c[max_tile_m * max_tile_n];
  for (int pair = 0; pair < 3; ++pair) {
    const int ta = pair == 1 ? elem_bf16 : elem_f32, tb = pair >= 1 ? elem_bf16 : elem_f32;
    for (int M = 1; M <= max_tile_m; ++M)
      for (int N : {3, 4, 6, 8}) {
        tile_fn f = kt.tiles[ta][tb][M - 1][N - 1];
        const void* a[max_tile_m];
        const void* b[max_tile_n];
        double flops = 0, t0 = thread_cpu_seconds();
        while (thread_cpu_seconds() - t0 < 0.2)
          for (int n = 0; n + N <= NB; n += N) {
            for (int i = 0; i < N; ++i)
              b[i] = tb == elem_bf16 ? static_cast<const void*>(&bb[static_cast<std::size_t>((n + i) * K)])
                                     : static_cast<const void*>(&bf[static_cast<std::size_t>((n + i) * K)]);
            for (int r = 0; r + M <= R; r += M) {
              for (int m = 0; m < M; ++m)
                a[m] = ta == elem_bf16 ? static_cast<const void*>(&ab[static_cast<std::size_t>((r + m) * K)])
                                       : static_cast<const void*>(&af[static_cast<std::size_t>((r + m) * K)]);
              f(a, b, K, c);
              flops += 2.0 * M * N * K;
            }
          }
        std::printf("%-12s M=%d N=%d K=%d: %6.1f GFLOP/s per CPU-second\n", names[pair], M, N, K,
                    flops / (thread_cpu_seconds() - t0) * 1e-9);
      }
  }
  return 0;
}
