// SPDX-License-Identifier: Apache-2.0
// The matrix unit's contract (cpu_kernels.h) in portable C++, one product at a time: the
// engine's AMX path (repacking, tails, passes, epilogues) then runs and is tested on any
// CPU. Slow by design; chosen only by MOEREG_CPU_ISA=amx_emulated.
#include <cmath>
#include <cstring>

#include "cpu_kernels.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {
namespace {

float bf16_at(const void* p, std::int64_t byte_offset) {
  std::uint16_t v;
  std::memcpy(&v, static_cast<const char*>(p) + byte_offset, 2);
  return bf16_value(v);
}

void emulated_begin() {}
void emulated_end() {}

void emulated_block(const bf16_rows* a, int na, const void* const* b, int nb, std::int64_t steps, float* c,
                    bool accumulate) {
  for (int ia = 0; ia < na; ++ia)
    for (int ib = 0; ib < nb; ++ib) {
      float* ct = c + 256 * (2 * ia + ib);
      if (!accumulate) std::memset(ct, 0, 256 * sizeof(float));
      for (std::int64_t s = 0; s < steps; ++s)
        for (int m = 0; m < 16; ++m)
          for (int n = 0; n < 16; ++n) {
            float sum = ct[16 * m + n];
            for (int kk = 0; kk < 16; ++kk)
              for (int half = 0; half < 2; ++half)
                sum += bf16_at(a[ia].p, m * a[ia].stride + a[ia].step * s + 2 * (2 * kk + half)) *
                       bf16_at(b[ib], 1024 * s + 64 * kk + 4 * n + 2 * half);
            ct[16 * m + n] = sum;
          }
    }
}

void emulated_pack(const std::uint16_t* const* rows, std::int64_t k_len, std::uint16_t* dst) {
  for (std::int64_t k0 = 0; k0 < k_len; k0 += 32, dst += 512)
    for (int kk = 0; kk < 16; ++kk)
      for (int t = 0; t < 16; ++t)
        for (int half = 0; half < 2; ++half) {
          const std::int64_t k = k0 + 2 * kk + half;
          dst[32 * kk + 2 * t + half] = rows[t] && k < k_len ? rows[t][k] : 0;
        }
}

void emulated_silu_mul(const float* g, const float* u, int rows, std::uint16_t* dst) {
  for (int r = 0; r < rows + (rows & 1); ++r)
    for (int t = 0; t < 16; ++t) {
      float h = 0;
      if (r < rows) {
        const float gv = g[16 * r + t];
        h = gv / (1.0f + std::exp(-gv)) * u[16 * r + t];
      }
      dst[16 * (r & ~1) + 2 * t + (r & 1)] = to_bf16(h);
    }
}

void emulated_load_rows(const void* src, std::int64_t stride, int rows, std::int64_t k_len, std::int64_t steps,
                        std::uint16_t* dst) {
  for (std::int64_t s = 0; s < steps; ++s)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 32; ++c) {
        const std::int64_t k = 32 * s + c;
        std::uint16_t v = 0;
        if (r < rows && k < k_len) std::memcpy(&v, static_cast<const char*>(src) + r * stride + 2 * k, 2);
        dst[512 * s + 32 * r + c] = v;
      }
}

void emulated_scale_out(const float* c, int rows, int tokens, const float* w, float* const* y) {
  for (int t = 0; t < tokens; ++t)
    for (int n = 0; n < rows; ++n) y[t][n] = w[t] * c[16 * n + t];
}

}  // namespace

void fill_amx_emulated(matrix_unit& u) {
  u.name = "amx_emulated";
  u.begin = &emulated_begin;
  u.end = &emulated_end;
  u.block = &emulated_block;
  u.block_first = &emulated_block;
  u.pack = &emulated_pack;
  u.silu_mul = &emulated_silu_mul;
  u.scale_out = &emulated_scale_out;
  u.load_rows = &emulated_load_rows;
}

}  // namespace moereg::cpu
