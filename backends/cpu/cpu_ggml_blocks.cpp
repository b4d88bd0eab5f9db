// SPDX-License-Identifier: Apache-2.0
#include "cpu_ggml_blocks.h"

#include <cstring>

namespace moereg::cpu {
namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::uint32_t to_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ggml's F16 -> F32 (ggml_compute_fp16_to_fp32), operation for operation.
float half_at(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
  const std::uint32_t sign = w & 0x80000000u;
  const std::uint32_t two_w = w + w;
  const float normalized = from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  return from_bits(sign | (two_w < (1u << 27) ? to_bits(denormalized) : to_bits(normalized)));
}

void q8_0(const std::uint8_t* b, float* y) {  // d, qs[32] int8
  const float d = half_at(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
}

void q4_0(const std::uint8_t* b, float* y) {  // d, qs[16]: low nibbles values 0-15, high 16-31
  const float d = half_at(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

// The 6-bit scale and min j of a Q4_K super-block (ggml's get_scale_min_k4).
void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

void q4_k(const std::uint8_t* b, float* y) {  // d, dmin, scales[12], qs[128]
  const float d = half_at(b), min = half_at(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* q = b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
    std::uint8_t sc, m;
    scale_min_k4(is + 0, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

void q6_k(const std::uint8_t* b, float* y) {  // ql[128], qh[64], scales[16] int8, d
  const std::uint8_t* ql = b;
  const std::uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = half_at(b + 208);
  // ggml's loop, regrouped by output run so each inner loop is one vectorizable stream (3.4 ->
  // 1.4 ns per value, one thread's CPU time on the Zen 2 CI machine): value
  // 32 i + l of a half (l < 32) is nibble i / 2 of ql[l + 32 (i % 2)] with bits 2 i of qh[l]
  // as its high two bits, times d * sc[2 i + l / 16] (the same products, in the same order).
  for (int n = 0; n < 2; ++n, y += 128, ql += 64, qh += 32, sc += 8)
    for (int i = 0; i < 4; ++i)
      for (int h = 0; h < 2; ++h) {
        const float ds = d * static_cast<float>(sc[2 * i + h]);
        for (int l = 16 * h; l < 16 * h + 16; ++l) {
          const int q = ((ql[l + 32 * (i % 2)] >> (4 * (i / 2))) & 0xF) | (((qh[l] >> (2 * i)) & 3) << 4);
          y[32 * i + l] = ds * static_cast<float>(q - 32);
        }
      }
}

// F16 values, as GGUF stores a tensor it did not quantize.
void widen_f16(const void* row, std::int64_t k0, std::int64_t n, const float*, std::int64_t, float* dst) {
  const auto* p = static_cast<const std::uint8_t*>(row) + 2 * k0;
  for (std::int64_t i = 0; i < n; ++i) dst[i] = half_at(p + 2 * i);
}

// Elements [k0, k0 + n) of a row of whole blocks: whole blocks decode straight into dst, a
// partly covered one (a K pass that does not start or end on a block) through a buffer.
template <int values, int bytes, void (*decode)(const std::uint8_t*, float*)>
void widen_blocks(const void* row, std::int64_t k0, std::int64_t n, const float*, std::int64_t, float* dst) {
  const auto* base = static_cast<const std::uint8_t*>(row);
  for (std::int64_t k = k0; k < k0 + n;) {
    const std::int64_t blk = k / values, off = k % values, take = values - off < k0 + n - k ? values - off : k0 + n - k;
    if (take == values) {
      decode(base + blk * bytes, dst + (k - k0));
    } else {
      float buf[values];
      decode(base + blk * bytes, buf);
      std::memcpy(dst + (k - k0), buf + off, static_cast<std::size_t>(take) * 4);
    }
    k += take;
  }
}

}  // namespace

int ggml_elem(std::int32_t ggml_type) {
  switch (ggml_type) {
    case 8: return elem_q8_0;
    case 2: return elem_q4_0;
    case 12: return elem_q4_k;
    case 14: return elem_q6_k;
    case 1: return elem_f16;
    default: return -1;
  }
}

const char* ggml_elem_name(int elem) {
  return elem == elem_q8_0 ? "Q8_0" : elem == elem_q4_0 ? "Q4_0" : elem == elem_q4_k ? "Q4_K" : elem == elem_q6_k ? "Q6_K" : elem == elem_f16 ? "F16" : "?";
}

void fill_ggml_widen(kernel_table& t) {
  t.widen[elem_q8_0] = &widen_blocks<32, 34, q8_0>;
  t.widen[elem_q4_0] = &widen_blocks<32, 18, q4_0>;
  t.widen[elem_q4_k] = &widen_blocks<256, 144, q4_k>;
  t.widen[elem_q6_k] = &widen_blocks<256, 210, q6_k>;
  t.widen[elem_f16] = &widen_f16;
}

}  // namespace moereg::cpu
