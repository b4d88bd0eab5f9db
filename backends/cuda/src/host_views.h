// SPDX-License-Identifier: Apache-2.0
// host_views.h - what the CUDA backend needs to know about the host-side views it is given:
// element counts, contiguity, shape checks (throwing, with the view's
// name and the expected shape, as cuda::invalid_argument or cuda::unsupported), dtype conversions, and parallel staging into bf16.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "moereg/abi/moereg_abi.h"

namespace moereg::cuda::host {

const char* dtype_name(int d);
// ceil(a / b) for positive sizes: blocks of b needed to cover a (scale grids, tiles).
inline long long cdiv(long long a, long long b) { return (a + b - 1) / b; }
long long numel(const moereg_tensor_view& v);
bool contiguous(const moereg_tensor_view& v);
std::string shape_str(const moereg_tensor_view& v);
// Throws unless v is contiguous host memory of exactly `shape`.
void expect(const moereg_tensor_view& v, const char* what, std::initializer_list<long long> shape);
size_t elem_size(int d);
uint16_t f32_to_bf16_bits(float f);
float f16_to_f32(uint16_t h);
float bf16_bits_to_f32(uint16_t b);
// The view's elements as float (F32, F16 or BF16).
std::vector<float> host_floats(const moereg_tensor_view& v, const char* what);
// Convert elements [first, first + n) of src (dtype) to bf16 bits in dst, with `threads` threads.
void stage_bf16(uint16_t* dst, const void* src, int dtype, size_t first, size_t n, int threads);
// Copy n bytes from src to dst as they are (F32 scales), with `threads` threads.
void stage_bytes(void* dst, const void* src, size_t n, int threads);
// Copy n bytes (a multiple of 16) of e4m3 weights from src to dst with every 16-byte group in
// the order the mma B fragments read them: bytes {2t, 2t+1, 8+2t, 9+2t} of the group at 4t
// (t = 0..3), so that each thread of the F8 kernels loads its fragment as one 32-bit word.
// A permutation inside each group: the same bytes, no value changed.
void stage_f8_fragments(void* dst, const void* src, size_t n, int threads);
// An F8_E4M3 [R, C] view (contiguous) of R / matrix_rows stacked matrices, each with its
// block scales [cdiv(matrix_rows, b0), cdiv(C, b1)] stacked the same way in `scale` (F32,
// contiguous), as bf16 bits: each weight q x s rounded once, the values `convert --dtype bf16`
// writes. The cuBLAS path's copy of an F8 shared expert.
std::vector<uint16_t> dequantize_f8(const moereg_tensor_view& w, const moereg_tensor_view& scale, long long matrix_rows,
                                    long long b0, long long b1, int threads);

}  // namespace moereg::cuda::host
