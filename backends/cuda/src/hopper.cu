// SPDX-License-Identifier: Apache-2.0
// hopper.cu - the host half of hopper.cuh: TMA descriptors, encoded through the driver entry
// point that cudart hands out (the backend links no libcuda).
#include <cudaTypedefs.h>

#include <mutex>
#include <stdexcept>
#include <string>

#include "hopper.cuh"

namespace moereg::cuda {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  });
  return fn;
}

}  // namespace

CUtensorMap make_sw128_map(const void* base, CUtensorMapDataType type, int elem_bytes, uint64_t rows, uint64_t cols,
                           uint32_t box_rows, const char* what) {
  auto encode = encode_tiled();
  if (!encode) throw std::runtime_error(std::string(what) + ": the driver has no cuTensorMapEncodeTiled");
  CUtensorMap m{};
  const cuuint64_t dims[2] = {cols, rows}, strides[1] = {cols * static_cast<uint64_t>(elem_bytes)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(128 / elem_bytes), box_rows}, unit[2] = {1, 1};
  const CUresult r = encode(&m, type, 2, const_cast<void*>(base), dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuTensorMapEncodeTiled refused [" + std::to_string(rows) + ", " +
                             std::to_string(cols) + "] of " + std::to_string(elem_bytes) + "-byte elements (CUresult " +
                             std::to_string(static_cast<int>(r)) + ")");
  return m;
}

}  // namespace moereg::cuda
