// SPDX-License-Identifier: Apache-2.0
// gguf_values.h - the two value rewrites of llama.cpp's converter for Qwen3.5 (conversion/qwen.py
// Qwen3NextModel.modify_tensors, computed there in float32): every `1 + w` RMSNorm weight is
// stored as 1 + w (norm_plus_one), and A_log as -exp(A_log) (ssm_a, which also reorders the
// value heads: linear_attn_heads.h).
//
// Both work on F32 elements only: moereg widens a bf16 model's norms and 1-D tensors to F32
// before the encode hook and decodes them as F32 before narrowing back, as llama.cpp's
// converter does its arithmetic in float32. Neither function is injective on all floats, so
// each ENCODE decodes what it wrote and refuses, naming the element, a value that would not
// come back bit for bit (moereg never writes a .gguf it cannot read back exactly):
//   - 1 + w: exact unless w is too small for 1 + w to hold all its bits (|w| < 2^-24 or so
//     for a bf16 w; see the tests for the exact set), or w is -0.0 (reads back +0.0).
//   - -exp(x): decoded as the float32 x nearest log(-y) whose -exp(x) is y again, preferring a
//     value a bf16 model can hold; refused where exp does not separate x from its neighbours
//     (|x| tiny, x below about -87 where exp underflows, x above 88.7 where it overflows, and
//     for F32 sources, whose neighbours are much closer, any x where float32 exp collides).
// Decoding a value that no float32 encodes to (a file not written this way) is an error too.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "linear_attn_heads.h"
#include "moereg/abi/moereg_hooks.h"

namespace qwen35_hooks {

inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// A float32 exactly representable in bf16 (its low 16 bits zero).
inline bool is_bf16(float f) { return (float_bits(f) & 0xFFFFu) == 0; }
inline std::string show(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (bits 0x%08x)", static_cast<double>(f), float_bits(f));
  return buf;
}

// 1 + w and back, in float32 as llama.cpp's converter computes it.
inline float plus_one(float w) { return w + 1.0f; }
inline float minus_one(float y) { return y - 1.0f; }

// -exp(x) and back. exp in double rounded once to float32: llama.cpp's converter uses torch's
// float32 exp, which may differ from this in the last bit of rare values (both are within an
// ulp of the true value); decoding accepts either, see neg_exp_inverse.
inline float neg_exp(float x) {
  if (std::isnan(x)) return bits_float(float_bits(x) ^ 0x80000000u);  // -(NaN): the sign flips, payload kept
  return static_cast<float>(-std::exp(static_cast<double>(x)));
}

// The float32 x with neg_exp(x) == y bitwise, nearest log(-y), preferring one a bf16 model can
// hold; a NaN when there is none (y positive, or no float32 encodes to it).
inline bool neg_exp_inverse(float y, float& x) {
  if (std::isnan(y)) {
    x = bits_float(float_bits(y) ^ 0x80000000u);
    return true;
  }
  if (!(y <= 0.0f)) return false;
  const double guess = std::log(-static_cast<double>(y));  // -inf for -0.0, +inf for -inf
  const float x0 = static_cast<float>(guess);
  if (std::isinf(x0)) {
    if (neg_exp(x0) == y && float_bits(neg_exp(x0)) == float_bits(y)) {
      x = x0;
      return true;
    }
    return false;
  }
  // bf16 candidates first: the nearest bf16 to x0 and its two neighbours.
  const std::uint32_t b0 = (float_bits(x0) + 0x7FFFu + ((float_bits(x0) >> 16) & 1u)) & 0xFFFF0000u;
  for (int k : {0, -1, 1}) {
    const float c = bits_float(static_cast<std::uint32_t>(static_cast<std::int64_t>(b0) + k * 0x10000));
    if (!std::isnan(c) && float_bits(neg_exp(c)) == float_bits(y)) {
      x = c;
      return true;
    }
  }
  // Then float32 values around x0, nearest first.
  float lo = x0, hi = x0;
  if (float_bits(neg_exp(x0)) == float_bits(y)) {
    x = x0;
    return true;
  }
  for (int k = 0; k < 8; ++k) {
    lo = std::nextafter(lo, -INFINITY);
    hi = std::nextafter(hi, INFINITY);
    for (float c : {lo, hi})
      if (float_bits(neg_exp(c)) == float_bits(y)) {
        x = c;
        return true;
      }
  }
  return false;
}

inline void check_f32(const std::string& hook, const std::string& key, const moereg_tensor_view* src, const moereg_tensor_view* dst) {
  check_same_view(key, src, dst);
  if (src->dtype != MOEREG_DTYPE_F32)
    throw hook_error(key + ": " + hook + " rewrites F32 values (the .gguf's F32 tensor, or the model's values widened to it), got dtype " +
                     std::to_string(src->dtype));
}

inline std::size_t element_count(const moereg_tensor_view* v) {
  std::size_t n = 1;
  for (int32_t d = 0; d < v->rank; ++d) n *= static_cast<std::size_t>(v->shape[d]);
  return n;
}

// The norm_plus_one hook.
inline void norm_plus_one(int32_t direction, const std::string& key, const moereg_tensor_view* src, moereg_tensor_view* dst) {
  check_f32("norm_plus_one", key, src, dst);
  const std::size_t n = element_count(src);
  auto in = static_cast<const float*>(src->data);
  auto out = static_cast<float*>(dst->data);
  for (std::size_t i = 0; i < n; ++i) {
    if (direction == MOEREG_DECODE) {
      out[i] = minus_one(in[i]);
      continue;
    }
    const float y = plus_one(in[i]);
    if (float_bits(minus_one(y)) != float_bits(in[i]))
      throw hook_error(key + ": element " + std::to_string(i) + ": RMSNorm weight " + show(in[i]) + " is stored by llama.cpp as 1 + w = " +
                       show(y) + ", which reads back as " + show(minus_one(y)) + ", not the same value; refusing to round");
    out[i] = y;
  }
}

// The ssm_a hook: A_log [value heads] <-> llama.cpp's ssm_a = -exp(A_log), value heads tiled.
inline void ssm_a(int32_t direction, const std::string& key, const char* config_json, const moereg_tensor_view* src,
                  moereg_tensor_view* dst) {
  check_f32("ssm_a", key, src, dst);
  const linear_attn_dims d = read_linear_attn_dims(key, config_json);
  const std::size_t n = element_count(src);
  if (n != static_cast<std::size_t>(d.v_heads))
    throw hook_error(key + ": " + std::to_string(n) + " values, expected one per value head (" + std::to_string(d.v_heads) + ")");
  std::vector<float> values(static_cast<const float*>(src->data), static_cast<const float*>(src->data) + n);
  moereg_tensor_view tmp = *src;
  tmp.data = values.data();
  if (direction == MOEREG_ENCODE) {  // values, then heads
    for (std::size_t i = 0; i < n; ++i) {
      const float x = values[i], y = neg_exp(x);
      float back = std::nanf("");  // stays NaN when nothing decodes to y
      if (!neg_exp_inverse(y, back) || float_bits(back) != float_bits(x))
        throw hook_error(key + ": element " + std::to_string(i) + ": A_log " + show(x) + " is stored by llama.cpp as -exp(A_log) = " +
                         show(y) + ", from which float32 cannot tell it apart" +
                         (std::isnan(back) ? std::string() : " (it reads back as " + show(back) + ")") + "; refusing to round");
      values[i] = y;
    }
    reorder_rows(MOEREG_ENCODE, d, 0, 1, key, &tmp, dst);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {  // values (named by their place in the file), then heads
    float x = 0;
    if (!neg_exp_inverse(values[i], x))
      throw hook_error(key + ": element " + std::to_string(i) + ": " + show(values[i]) +
                       " is not -exp of any float32 value, so it cannot be read back as A_log");
    values[i] = x;
  }
  reorder_rows(MOEREG_DECODE, d, 0, 1, key, &tmp, dst);
}

}  // namespace qwen35_hooks
