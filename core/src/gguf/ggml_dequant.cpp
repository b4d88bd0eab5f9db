// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/ggml_dequant.h"

#include <cmath>
#include <cstring>
#include <string>

#include "moereg/base/error.h"
#include "moereg/tensor/dtype.h"

namespace moereg {

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

// x86's addss/subss return their first operand when both are NaN, so ggml's scalar
// `x * d + m` keeps the product's NaN; the compiler may swap a commutative add's operands
// (vectorized code does), so that choice is made explicit here.
float add_after(float product, float m) { return std::isnan(product) ? product : product + m; }
float sub_after(float product, float m) { return std::isnan(product) ? product : product - m; }

// ggml's own F16 -> F32 (ggml_compute_fp16_to_fp32 in ggml-impl.h), operation for operation:
// moereg's f16_to_f32 gives every NaN as the canonical NaN, while ggml keeps the payload
// (quieted by its multiplication), and bit-identical decoding must keep it too.
float half(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
  const std::uint32_t sign = w & 0x80000000u;
  const std::uint32_t two_w = w + w;
  const float normalized = from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  return from_bits(sign | (two_w < (1u << 27) ? to_bits(denormalized) : to_bits(normalized)));
}

// The 6-bit scale and min j of a Q4_K / Q5_K super-block (ggml's get_scale_min_k4).
void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

void q4_0(const std::uint8_t* b, float* y) {  // d, qs[16]
  const float d = half(b);
  const std::uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    const int x0 = (qs[j] & 0x0F) - 8, x1 = (qs[j] >> 4) - 8;
    y[j] = static_cast<float>(x0) * d;
    y[j + 16] = static_cast<float>(x1) * d;
  }
}

void q4_1(const std::uint8_t* b, float* y) {  // d, m, qs[16]
  const float d = half(b), m = half(b + 2);
  const std::uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = add_after(static_cast<float>(qs[j] & 0x0F) * d, m);
    y[j + 16] = add_after(static_cast<float>(qs[j] >> 4) * d, m);
  }
}

void q5(const std::uint8_t* b, float* y, bool with_min) {  // d, [m], qh[4], qs[16]
  const float d = half(b), m = with_min ? half(b + 2) : 0.0f;
  const std::uint8_t* p = b + (with_min ? 4 : 2);
  std::uint32_t qh;
  std::memcpy(&qh, p, 4);
  const std::uint8_t* qs = p + 4;
  for (int j = 0; j < 16; ++j) {
    const std::uint8_t xh0 = static_cast<std::uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
    const std::uint8_t xh1 = static_cast<std::uint8_t>((qh >> (j + 12)) & 0x10);
    if (with_min) {
      y[j] = add_after(static_cast<float>((qs[j] & 0x0F) | xh0) * d, m);
      y[j + 16] = add_after(static_cast<float>((qs[j] >> 4) | xh1) * d, m);
    } else {
      y[j] = static_cast<float>(((qs[j] & 0x0F) | xh0) - 16) * d;
      y[j + 16] = static_cast<float>(((qs[j] >> 4) | xh1) - 16) * d;
    }
  }
}

void q8_0(const std::uint8_t* b, float* y) {  // d, qs[32] int8
  const float d = half(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
}

void mxfp4(const std::uint8_t* b, float* y) {  // e (E8M0), qs[16] (E2M1 pairs)
  static const std::int8_t values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};  // 2 * E2M1
  // 2^(e-127) / 2, as ggml_e8m0_to_fp32_half builds it (subnormal for e < 2).
  const std::uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : static_cast<std::uint32_t>(b[0] - 1) << 23;
  float d;
  std::memcpy(&d, &bits, 4);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(values[b[1 + j] & 0x0F]) * d;
    y[j + 16] = static_cast<float>(values[b[1 + j] >> 4]) * d;
  }
}

void q2_k(const std::uint8_t* b, float* y) {  // scales[16], qs[64], d, dmin
  const std::uint8_t* scales = b;
  const std::uint8_t* q = b + 16;
  const float d = half(b + 80), min = half(b + 82);
  int is = 0;
  for (int n = 0; n < ggml_qk_k; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half_ = 0; half_ < 2; ++half_) {
        const std::uint8_t sc = scales[is++];
        const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = sub_after(dl * static_cast<float>((q[l + 16 * half_] >> shift) & 3), ml);
      }
      shift += 2;
    }
    q += 32;
  }
}

void q3_k(const std::uint8_t* b, float* y) {  // hmask[32], qs[64], scales[12], d
  const std::uint8_t* hm = b;
  const std::uint8_t* q = b + 32;
  const float d_all = half(b + 108);
  std::uint32_t aux[4];
  std::memcpy(aux, b + 96, 12);
  const std::uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f, tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  std::int8_t scales[16];
  std::memcpy(scales, aux, 16);
  int is = 0;
  std::uint8_t m = 1;
  for (int n = 0; n < ggml_qk_k; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half_ = 0; half_ < 2; ++half_) {
        const float dl = d_all * static_cast<float>(scales[is++] - 32);
        for (int l = 16 * half_; l < 16 * half_ + 16; ++l)
          *y++ = dl * static_cast<float>(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      }
      shift += 2;
      m = static_cast<std::uint8_t>(m << 1);
    }
    q += 32;
  }
}

void q45_k(const std::uint8_t* b, float* y, bool five) {  // d, dmin, scales[12], [qh[32]], qs[128]
  const float d = half(b), min = half(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* qh = b + 16;
  const std::uint8_t* q = b + (five ? 48 : 16);
  int is = 0;
  std::uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < ggml_qk_k; j += 64) {
    std::uint8_t sc, m;
    scale_min_k4(is + 0, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = sub_after(d1 * static_cast<float>((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)), m1);
    for (int l = 0; l < 32; ++l) *y++ = sub_after(d2 * static_cast<float>((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)), m2);
    q += 32;
    is += 2;
    u1 = static_cast<std::uint8_t>(u1 << 2);
    u2 = static_cast<std::uint8_t>(u2 << 2);
  }
}

void q6_k(const std::uint8_t* b, float* y) {  // ql[128], qh[64], scales[16] int8, d
  const std::uint8_t* ql = b;
  const std::uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int n = 0; n < ggml_qk_k; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const auto q1 = static_cast<std::int8_t>(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      const auto q2 = static_cast<std::int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      const auto q3 = static_cast<std::int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      const auto q4 = static_cast<std::int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

bool ggml_dequantize_supported(ggml_type t) {
  switch (t) {
    case ggml_type::F32: case ggml_type::F16: case ggml_type::BF16:
    case ggml_type::Q4_0: case ggml_type::Q4_1: case ggml_type::Q5_0: case ggml_type::Q5_1: case ggml_type::Q8_0:
    case ggml_type::Q2_K: case ggml_type::Q3_K: case ggml_type::Q4_K: case ggml_type::Q5_K: case ggml_type::Q6_K:
    case ggml_type::MXFP4:
      return true;
    default:
      return false;
  }
}

void ggml_dequantize(ggml_type t, const std::byte* src, float* y, std::int64_t count) {
  const ggml_type_traits& tr = ggml_traits(t);
  if (!ggml_dequantize_supported(t))
    throw error("ggml type " + std::string(tr.name) + " is not decoded by moereg (it decodes F32, F16, BF16, Q4_0, Q4_1, "
                "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and MXFP4)");
  if (count < 0 || count % tr.block_size != 0)
    throw error("ggml type " + std::string(tr.name) + ": " + std::to_string(count) + " values are not whole blocks of " +
                std::to_string(tr.block_size));
  const auto* b = reinterpret_cast<const std::uint8_t*>(src);
  const std::int64_t blocks = count / tr.block_size;
  for (std::int64_t i = 0; i < blocks; ++i, b += tr.type_size, y += tr.block_size) {
    switch (t) {
      case ggml_type::F32: std::memcpy(y, b, 4); break;
      case ggml_type::F16: *y = half(b); break;
      case ggml_type::BF16: {
        std::uint16_t h;
        std::memcpy(&h, b, 2);
        *y = bf16_to_f32(h);
        break;
      }
      case ggml_type::Q4_0: q4_0(b, y); break;
      case ggml_type::Q4_1: q4_1(b, y); break;
      case ggml_type::Q5_0: q5(b, y, false); break;
      case ggml_type::Q5_1: q5(b, y, true); break;
      case ggml_type::Q8_0: q8_0(b, y); break;
      case ggml_type::Q2_K: q2_k(b, y); break;
      case ggml_type::Q3_K: q3_k(b, y); break;
      case ggml_type::Q4_K: q45_k(b, y, false); break;
      case ggml_type::Q5_K: q45_k(b, y, true); break;
      case ggml_type::Q6_K: q6_k(b, y); break;
      case ggml_type::MXFP4: mxfp4(b, y); break;
      default: break;
    }
  }
}

}  // namespace moereg
