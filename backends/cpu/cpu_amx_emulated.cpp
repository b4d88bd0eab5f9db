// SPDX-License-Identifier: Apache-2.0
// The matrix unit's contract (cpu_kernels.h) in portable C++, one product at a time: the
// engine's AMX path (repacking, tails, passes, epilogues) then runs and is tested on any
// CPU. Slow by design; chosen only by the backend option isa=amx_emulated. The INT8 half
// (tdpbssd's contract, cpu_int_dot.h) likewise, for the integer products of int_dot.
#include <cmath>
#include <cstring>

#include "cpu_int_dot.h"
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
                    bool accumulate, const l2_ahead&) {
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

// tdpbssd: C[m][n] += sum over kk, j of A[m][4 kk + j] x B[kk][4 n + j], signed bytes.
void emulated_int_block(const int8_rows* a, int na, const void* const* b, int nb, std::int64_t steps, std::int32_t* c,
                        bool accumulate) {
  for (int ia = 0; ia < na; ++ia)
    for (int ib = 0; ib < nb; ++ib) {
      std::int32_t* ct = c + 256 * (2 * ia + ib);
      if (!accumulate) std::memset(ct, 0, 256 * sizeof(std::int32_t));
      const auto* at = static_cast<const std::int8_t*>(a[ia].p);
      const auto* bt = static_cast<const std::int8_t*>(b[ib]);
      for (std::int64_t s = 0; s < steps; ++s)
        for (int m = 0; m < 16; ++m)
          for (int n = 0; n < 16; ++n) {
            std::int32_t sum = ct[16 * m + n];
            for (int kk = 0; kk < 16; ++kk)
              for (int j = 0; j < 4; ++j) sum += at[a[ia].step * s + a[ia].stride * m + 4 * kk + j] * bt[1024 * s + 64 * kk + 4 * n + j];
            ct[16 * m + n] = sum;
          }
    }
}

void emulated_int_pack(const std::int8_t* const* rows, std::int64_t c0, std::int64_t steps, std::int8_t* dst) {
  for (std::int64_t s = 0; s < steps; ++s)
    for (int kk = 0; kk < 16; ++kk)
      for (int t = 0; t < 16; ++t)
        for (int j = 0; j < 4; ++j)
          dst[1024 * s + 64 * kk + 4 * t + j] = rows[t] ? rows[t][(c0 + s) * int_chunk + 4 * kk + j] : 0;
}

void emulated_int_load_rows(const void* src, std::int64_t stride, int rows, bool int4, std::int64_t k, std::int64_t c0,
                            std::int64_t steps, std::int8_t* dst) {
  for (std::int64_t s = 0; s < steps; ++s)
    for (int r = 0; r < 16; ++r)
      for (std::int64_t p = 0; p < int_chunk; ++p) {
        // Position p of the chunk holds element e: as is, or (int4) even elements first.
        const std::int64_t e = (c0 + s) * int_chunk + (!int4 ? p : p < 32 ? 2 * p : 2 * (p - 32) + 1);
        int v = 0;
        if (r < rows && e < k) {
          const auto* row = static_cast<const std::uint8_t*>(src) + r * stride;
          v = int4 ? static_cast<int>(e % 2 ? row[e / 2] >> 4 : row[e / 2] & 15) - 8 : static_cast<std::int8_t>(row[e]);
        }
        dst[1024 * s + 64 * r + p] = static_cast<std::int8_t>(v);
      }
}

void emulated_int_scale_acc(const std::int32_t* c, const float* ws, const float* as, float* acc, bool accumulate) {
  for (int m = 0; m < 16; ++m)
    for (int t = 0; t < 16; ++t) {
      const float p = static_cast<float>(c[16 * m + t]) * (ws[m] * as[t]);
      acc[16 * m + t] = accumulate ? acc[16 * m + t] + p : p;
    }
}

void emulated_int_silu_out(const float* g, const float* u, int rows, int tokens, float* const* h) {
  for (int t = 0; t < tokens; ++t)
    for (int m = 0; m < rows; ++m) h[t][m] = g[16 * m + t] / (1.0f + std::exp(-g[16 * m + t])) * u[16 * m + t];
}

}  // namespace

void fill_int_amx_emulated(int_unit& u) {
  u.name = "amx_int8_emulated";
  u.begin = &emulated_begin;
  u.end = &emulated_end;
  u.block = &emulated_int_block;
  u.pack = &emulated_int_pack;
  u.load_rows = &emulated_int_load_rows;
  u.scale_acc = &emulated_int_scale_acc;
  u.silu_out = &emulated_int_silu_out;
  u.scale_out = &emulated_scale_out;
}

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
