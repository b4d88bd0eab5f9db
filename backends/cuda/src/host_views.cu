// SPDX-License-Identifier: Apache-2.0
// host_views.cu - checks and conversions of the host-side tensor views a caller passes in
// (shapes, dtypes, contiguity), and the multi-threaded bf16 staging used while uploading.
#include "host_views.h"

#include "cuda_moe.h"  // invalid_argument, unsupported: the error kinds the entry maps to codes

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

namespace moereg::cuda::host {

using cuda::invalid_argument;
using cuda::unsupported;

const char* dtype_name(int d) {
  switch (d) {
    case MOEREG_DTYPE_BF16: return "BF16";
    case MOEREG_DTYPE_F16: return "F16";
    case MOEREG_DTYPE_F32: return "F32";
    case MOEREG_DTYPE_F8_E4M3: return "F8_E4M3";
    case MOEREG_DTYPE_I32: return "I32";
    case MOEREG_DTYPE_I64: return "I64";
    default: return "other";
  }
}

long long numel(const moereg_tensor_view& v) {
  long long n = 1;
  for (int i = 0; i < v.rank; ++i) n *= v.shape[i];
  return n;
}

bool contiguous(const moereg_tensor_view& v) {
  long long s = 1;
  for (int i = v.rank - 1; i >= 0; --i) {
    if (v.shape[i] != 1 && v.strides[i] != s) return false;
    s *= v.shape[i];
  }
  return true;
}

std::string shape_str(const moereg_tensor_view& v) {
  std::string s = "[";
  for (int i = 0; i < v.rank; ++i) s += (i ? ", " : "") + std::to_string(v.shape[i]);
  return s + "]";
}

// A view must exist, be contiguous and have exactly `shape`.
void expect(const moereg_tensor_view& v, const char* what, std::initializer_list<long long> shape) {
  if (!v.data) throw invalid_argument(std::string(what) + ": missing tensor");
  std::string want = "[";
  int i = 0;
  bool ok = v.rank == static_cast<int>(shape.size());
  for (long long d : shape) {
    want += (i ? ", " : "") + std::to_string(d);
    if (ok && v.shape[i] != d) ok = false;
    ++i;
  }
  want += "]";
  if (!ok) throw invalid_argument(std::string(what) + ": shape " + shape_str(v) + ", expected " + want);
  if (!contiguous(v)) throw unsupported(std::string(what) + ": strided view, expected a contiguous tensor");
}

size_t elem_size(int d) {
  switch (d) {
    case MOEREG_DTYPE_BF16:
    case MOEREG_DTYPE_F16: return 2;
    case MOEREG_DTYPE_F32:
    case MOEREG_DTYPE_I32: return 4;
    case MOEREG_DTYPE_I64: return 8;
    default: return 1;
  }
}

uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float f16_to_f32(uint16_t h) {
  uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
  if (e == 0) {
    if (m == 0) {
      u = s;
    } else {
      e = 113;
      while (!(m & 0x400)) {
        m <<= 1;
        --e;
      }
      u = s | (e << 23) | ((m & 0x3ff) << 13);
    }
  } else if (e == 31) {
    u = s | 0x7f800000u | (m << 13);
  } else {
    u = s | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float bf16_bits_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Host values of a small float tensor (router, bias) as f32.
std::vector<float> host_floats(const moereg_tensor_view& v, const char* what) {
  if (v.memory != MOEREG_MEMORY_HOST) throw invalid_argument(std::string(what) + ": expected host memory");
  const long long n = numel(v);
  std::vector<float> out(static_cast<size_t>(n));
  for (long long i = 0; i < n; ++i) {
    switch (v.dtype) {
      case MOEREG_DTYPE_F32: out[i] = static_cast<const float*>(v.data)[i]; break;
      case MOEREG_DTYPE_BF16: out[i] = bf16_bits_to_f32(static_cast<const uint16_t*>(v.data)[i]); break;
      case MOEREG_DTYPE_F16: out[i] = f16_to_f32(static_cast<const uint16_t*>(v.data)[i]); break;
      default:
        throw unsupported(std::string(what) + ": dtype " + dtype_name(v.dtype) + ", expected BF16, F16 or F32");
    }
  }
  return out;
}

// Copy `n` elements of a host tensor into bf16 `dst`, converting, using `threads` threads.
void stage_bf16(uint16_t* dst, const void* src, int dtype, size_t first, size_t n, int threads) {
  auto part = [&](size_t b, size_t e) {
    if (dtype == MOEREG_DTYPE_BF16) {
      std::memcpy(dst + b, static_cast<const uint16_t*>(src) + first + b, (e - b) * 2);
    } else if (dtype == MOEREG_DTYPE_F16) {
      const uint16_t* s = static_cast<const uint16_t*>(src) + first;
      for (size_t i = b; i < e; ++i) dst[i] = f32_to_bf16_bits(f16_to_f32(s[i]));
    } else {
      const float* s = static_cast<const float*>(src) + first;
      for (size_t i = b; i < e; ++i) dst[i] = f32_to_bf16_bits(s[i]);
    }
  };
  if (threads <= 1 || n < (1u << 20)) {
    part(0, n);
    return;
  }
  std::vector<std::thread> pool;
  size_t step = (n + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    size_t b = std::min(n, t * step), e = std::min(n, b + step);
    if (b < e) pool.emplace_back(part, b, e);
  }
  for (auto& th : pool) th.join();
}

namespace {
// Runs part(begin, end) over [0, n) cut at multiples of `align`, on up to `threads` threads.
template <class Part>
void split(size_t n, size_t align, int threads, const Part& part) {
  if (threads <= 1 || n < (2u << 20)) {
    part(0, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t step = ((n + threads - 1) / threads + align - 1) / align * align;
  for (int t = 0; t < threads; ++t) {
    const size_t b = std::min(n, t * step), e = std::min(n, b + step);
    if (b < e) pool.emplace_back(part, b, e);
  }
  for (auto& th : pool) th.join();
}
}  // namespace

void stage_f8_fragments(void* dst, const void* src, size_t n, int threads) {
  split(n, 16, threads, [&](size_t b, size_t e) {
    const auto* in = static_cast<const unsigned char*>(src);
    auto* out = static_cast<unsigned char*>(dst);
    for (size_t g = b; g < e; g += 16) {
      uint16_t half[8], perm[8];
      std::memcpy(half, in + g, 16);
      for (int t = 0; t < 4; ++t) {
        perm[2 * t] = half[t];          // k = 2t, 2t+1: the fragment's first register
        perm[2 * t + 1] = half[4 + t];  // k = 8+2t, 9+2t: its second
      }
      std::memcpy(out + g, perm, 16);
    }
  });
}

void stage_bytes(void* dst, const void* src, size_t n, int threads) {
  split(n, 1, threads, [&](size_t b, size_t e) {
    std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
  });
}

namespace {
// The exact value of an e4m3fn byte (no infinities; 0x7F and 0xFF are NaN).
float e4m3_value(unsigned char v) {
  const int e = (v >> 3) & 15, m = v & 7;
  float x = e == 0 ? std::ldexp(static_cast<float>(m), -9)
            : (e == 15 && m == 7) ? std::numeric_limits<float>::quiet_NaN()
                                  : std::ldexp(1.0f + m / 8.0f, e - 7);
  return v & 0x80 ? -x : x;
}
}  // namespace

std::vector<uint16_t> dequantize_f8(const moereg_tensor_view& w, const moereg_tensor_view& scale, long long matrix_rows,
                                    long long b0, long long b1, int threads) {
  const long long R = w.shape[0], C = w.shape[1], grid_rows = cdiv(matrix_rows, b0), grid_cols = cdiv(C, b1);
  std::vector<uint16_t> out(static_cast<size_t>(R * C));
  const auto* q = static_cast<const unsigned char*>(w.data);
  const auto* s = static_cast<const float*>(scale.data);
  split(static_cast<size_t>(R * C), static_cast<size_t>(C), threads, [&](size_t b, size_t e) {  // whole rows each
    for (size_t r = b / C; r < e / C; ++r) {
      const long long m = static_cast<long long>(r) / matrix_rows, rr = static_cast<long long>(r) % matrix_rows;
      const float* srow = s + (m * grid_rows + rr / b0) * grid_cols;
      for (long long c = 0; c < C; ++c) out[r * C + c] = f32_to_bf16_bits(e4m3_value(q[r * C + c]) * srow[c / b1]);
    }
  });
  return out;
}

}  // namespace moereg::cuda::host
