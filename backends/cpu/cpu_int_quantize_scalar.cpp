// SPDX-License-Identifier: Apache-2.0
// The activations' int8 quantization (cpu_int_dot.h's int_quantize_fn) in portable C++: the
// definition the vector versions reproduce bit for bit, and the path of CPUs without AVX2.
// Compiled without ISA flags, so it may use the STL.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_int_dot.h"

namespace moereg::cpu {

void int_quantize_scalar(const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4, std::int8_t* q,
                         float* scale, std::int32_t* sum) {
  auto value = [&](std::int64_t i) {
    if (!bf16) return static_cast<const float*>(src)[i];
    const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<const std::uint16_t*>(src)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  };
  const std::int64_t chunks = (k + int_chunk - 1) / int_chunk, groups = (k + group - 1) / group;
  // The last chunk first all zeros: past k, in either layout, the padding the tiles multiply.
  std::fill(q + (chunks - 1) * int_chunk, q + chunks * int_chunk, std::int8_t{0});
  for (std::int64_t gi = 0; gi < groups; ++gi) {
    const std::int64_t c0 = gi * group, c1 = std::min(k, c0 + group);
    float amax = 0;
    for (std::int64_t i = c0; i < c1; ++i) amax = std::max(amax, std::fabs(value(i)));
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    scale[gi] = amax / 127.0f;
    for (std::int64_t i = c0; i < c1; ++i) {
      const auto code = static_cast<std::int8_t>(std::clamp(std::nearbyint(value(i) * inv), -127.0f, 127.0f));
      // int4 weights: each 64-chunk even elements first (cpu_int_dot.h).
      const std::int64_t j = i % int_chunk;
      q[i - j + (int4 ? (j % 2 ? 32 + j / 2 : j / 2) : j)] = code;
    }
  }
  for (std::int64_t c = 0; c < chunks; ++c) {
    std::int32_t s = 0;
    for (std::int64_t p = 0; p < int_chunk; ++p) s += q[c * int_chunk + p];
    sum[c] = s;
  }
}

}  // namespace moereg::cpu
