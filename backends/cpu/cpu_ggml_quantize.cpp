// SPDX-License-Identifier: Apache-2.0
// Online quantization into ggml blocks (backend option quantize=q8_0|q4_0|q4_k|q6_k): so the
// benchmark and tests can run the GGUF block paths on any bf16 layer. Simple quantizers, not
// llama.cpp's searched ones (make_qkx2_quants): each block's scales come from its range, and
// every value is rounded to its nearest code under the f16-rounded scales actually stored, so
// the error per value is at most half a step of its sub-block (tested). The blocks are
// bit-valid ggml: core's decoder (checked against libggml) reads them back.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu_ggml_blocks.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {
namespace {

// f32 -> IEEE f16, round to nearest even (finite, non-negative inputs below 65504 here).
std::uint16_t to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7FFFFFFFu;
  if (x >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7BFFu);  // clamp to the largest finite
  if (x < 0x38800000u) {                                                     // subnormal f16 (or zero)
    float a;
    std::memcpy(&a, &x, 4);
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(a * 0x1.0p24f)));
  }
  const std::uint32_t r = x + 0xFFFu + ((x >> 13) & 1u);  // round to nearest even at bit 13
  return static_cast<std::uint16_t>(sign | ((r - 0x38000000u) >> 13));
}

float from_half(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16, e = (h >> 10) & 31, m = h & 1023;
  float v = e ? std::ldexp(static_cast<float>(m | 1024), static_cast<int>(e) - 25) : std::ldexp(static_cast<float>(m), -24);
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  b |= sign;
  std::memcpy(&v, &b, 4);
  return v;
}

// Stores f as f16 at p; returns the value stored.
float put_half(std::uint8_t* p, float f) {
  const std::uint16_t h = to_half(f);
  p[0] = static_cast<std::uint8_t>(h & 0xFF);
  p[1] = static_cast<std::uint8_t>(h >> 8);
  return from_half(h);
}

int round_clamp(float v, int lo, int hi) { return std::clamp(static_cast<int>(std::nearbyint(v)), lo, hi); }

void quantize_q8_0(const float* x, std::uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = put_half(b, amax / 127), id = d > 0 ? 1 / d : 0;
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(round_clamp(x[j] * id, -127, 127)));
}

// Codes 0..15 stand for (q - 8) d: symmetric, d = amax / 7 (the code -8 unused).
void quantize_q4_0(const float* x, std::uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = put_half(b, amax / 7), id = d > 0 ? 1 / d : 0;
  for (int j = 0; j < 16; ++j)
    b[2 + j] = static_cast<std::uint8_t>((round_clamp(x[j] * id, -8, 7) + 8) | (round_clamp(x[j + 16] * id, -8, 7) + 8) << 4);
}

// Eight sub-blocks of 32: value = d sc q - dmin m, q 0..15, sc and m 6-bit. Each sub-block's
// offset m covers its minimum (when negative) and its step sc covers its range.
void quantize_q4_k(const float* x, std::uint8_t* b) {
  float step[8], off[8], max_step = 0, max_off = 0;
  for (int j = 0; j < 8; ++j) {
    float lo = 0, hi = 0;
    for (int l = 0; l < 32; ++l) lo = std::min(lo, x[32 * j + l]), hi = std::max(hi, x[32 * j + l]);
    step[j] = (hi - lo) / 15;
    off[j] = -lo;
    max_step = std::max(max_step, step[j]);
    max_off = std::max(max_off, off[j]);
  }
  const float d = put_half(b, max_step / 63), dmin = put_half(b + 2, max_off / 63);
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    // The offset rounds up and the step up too, so the sub-block's range stays covered.
    m[j] = dmin > 0 ? std::min(63, static_cast<int>(std::ceil(off[j] / dmin))) : 0;
    sc[j] = d > 0 ? std::clamp(static_cast<int>(std::ceil((step[j] * 15 + (dmin * static_cast<float>(m[j]) - off[j])) / 15 / d)), 0, 63) : 0;
  }
  std::uint8_t* s = b + 4;
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<std::uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
    s[j + 4] = static_cast<std::uint8_t>(m[j] | (m[j + 4] >> 4) << 6);
    s[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0xF) | (m[j + 4] & 0xF) << 4);
  }
  std::uint8_t* q = b + 16;
  for (int j = 0; j < 8; j += 2, q += 32)
    for (int l = 0; l < 32; ++l) {
      int code[2];
      for (int h = 0; h < 2; ++h) {
        const float ds = d * static_cast<float>(sc[j + h]), mo = dmin * static_cast<float>(m[j + h]);
        code[h] = ds > 0 ? round_clamp((x[32 * (j + h) + l] + mo) / ds, 0, 15) : 0;
      }
      q[l] = static_cast<std::uint8_t>(code[0] | code[1] << 4);
    }
}

// Sixteen sub-blocks of 16: value = d sc q, q -32..31, sc int8.
void quantize_q6_k(const float* x, std::uint8_t* b) {
  float step[16], max_step = 0;
  for (int j = 0; j < 16; ++j) {
    float amax = 0;
    for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * j + l]));
    step[j] = amax / 31;
    max_step = std::max(max_step, step[j]);
  }
  const float d = put_half(b + 208, max_step / 127);
  auto* sc = reinterpret_cast<std::int8_t*>(b + 192);
  for (int j = 0; j < 16; ++j) sc[j] = static_cast<std::int8_t>(d > 0 ? std::min(127, static_cast<int>(std::ceil(step[j] / d))) : 0);
  std::uint8_t* ql = b;
  std::uint8_t* qh = b + 128;
  std::memset(qh, 0, 64);
  for (int half = 0; half < 2; ++half)
    for (int l = 0; l < 32; ++l) {
      int q[4];
      for (int i = 0; i < 4; ++i) {
        const int v = 128 * half + l + 32 * i;  // the value ggml's decoder gives as y[l + 32 i]
        const float ds = d * static_cast<float>(sc[v / 16]);
        q[i] = (ds > 0 ? round_clamp(x[v] / ds, -32, 31) : 0) + 32;
      }
      ql[64 * half + l] = static_cast<std::uint8_t>((q[0] & 0xF) | (q[2] & 0xF) << 4);
      ql[64 * half + l + 32] = static_cast<std::uint8_t>((q[1] & 0xF) | (q[3] & 0xF) << 4);
      qh[32 * half + l] = static_cast<std::uint8_t>((q[0] >> 4) | (q[1] >> 4) << 2 | (q[2] >> 4) << 4 | (q[3] >> 4) << 6);
    }
}

}  // namespace

void ggml_quantize_row(int elem, const float* x, std::int64_t k, std::uint8_t* dst) {
  const std::int64_t n = block_values(elem), bytes = block_bytes(elem);
  void (*quantize)(const float*, std::uint8_t*) = elem == elem_q8_0 ? &quantize_q8_0
      : elem == elem_q4_0 ? &quantize_q4_0 : elem == elem_q4_k ? &quantize_q4_k : &quantize_q6_k;
  for (std::int64_t i = 0; i < k / n; ++i) quantize(x + i * n, dst + i * bytes);
}

}  // namespace moereg::cpu
