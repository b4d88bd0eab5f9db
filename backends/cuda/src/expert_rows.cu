// SPDX-License-Identifier: Apache-2.0
// expert_rows.cu - the combine of the library GEMM paths (see expert_rows.h).
#include "expert_rows.h"

#include <stdexcept>
#include <string>

#include "moe_kernels.cuh"

namespace moereg::cuda {

namespace {

// One block per token, the K rows looked up once.
__global__ void combine_rows(const __nv_bfloat16* __restrict__ y, const void* ids, int ids_i64,
                             const float* __restrict__ weights, const int* __restrict__ rank,
                             const int* __restrict__ offsets, int top_k, int hidden, padding pad, shared_rows shared,
                             float* __restrict__ out) {
  __shared__ int row[max_combine_top_k];
  __shared__ float wt[max_combine_top_k];
  const int t = blockIdx.x;
  if (threadIdx.x < top_k) {
    const int s = t * top_k + threadIdx.x;
    const int r = rank[s];
    if (r >= 0) {
      const long long e = ids_i64 ? static_cast<const long long*>(ids)[s] : static_cast<const int*>(ids)[s];
      row[threadIdx.x] = work_row(offsets[e] + r, pad);
      wt[threadIdx.x] = weights[s];
    } else {
      row[threadIdx.x] = -1;
      wt[threadIdx.x] = 0.f;
    }
  }
  __syncthreads();
  const __nv_bfloat16* own =
      shared.expert >= 0 ? y + static_cast<size_t>(work_row(offsets[shared.expert] + t, pad)) * hidden : nullptr;
  const float g = own && shared.gate ? shared.gate[t] : 1.f;
  for (int c = 2 * threadIdx.x; c < hidden; c += 2 * blockDim.x) {
    float2 acc = make_float2(0.f, 0.f);
    for (int k = 0; k < top_k; ++k) {
      if (row[k] < 0) continue;
      const float2 v = __bfloat1622float2(
          *reinterpret_cast<const __nv_bfloat162*>(y + static_cast<size_t>(row[k]) * hidden + c));
      acc.x += wt[k] * v.x;
      acc.y += wt[k] * v.y;
    }
    if (own) {
      const float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(own + c));
      acc.x += g * v.x;
      acc.y += g * v.y;
    }
    *reinterpret_cast<float2*>(out + static_cast<size_t>(t) * hidden + c) = acc;
  }
}

// offsets[0, E] = routed[0, E] (the offsets the routing left), offsets[E + 1] = routed[E] + tokens.
__global__ void append_shared_rows(const int* __restrict__ routed, int experts, int tokens, int* __restrict__ offsets) {
  for (int e = threadIdx.x; e <= experts; e += blockDim.x) offsets[e] = routed[e];
  if (threadIdx.x == 0) offsets[experts + 1] = routed[experts] + tokens;
}

}  // namespace


void launch_combine_rows(const __nv_bfloat16* y, const routed_rows& in, const padding& pad, int hidden, float* out,
                         cudaStream_t stream, const shared_rows& shared) {
  combine_rows<<<in.tokens, 256, 0, stream>>>(y, in.ids, in.ids_i64, in.weights, in.rank, in.offsets, in.top_k, hidden,
                                              pad, shared, out);
  check_launch("combine rows");
}

grouped_rows::~grouped_rows() {
  if (offsets_) cudaFree(offsets_);
}

void grouped_rows::add_shared(const char* what) {
  if (offsets_) return;
  const cudaError_t e = cudaMalloc(&offsets_, (E_ + 2) * sizeof(int));
  if (e != cudaSuccess) {
    offsets_ = nullptr;
    throw std::runtime_error(std::string(what) + ": expert offsets: " + cudaGetErrorString(e));
  }
}

const int* grouped_rows::offsets(const routed_rows& in, cudaStream_t stream) {
  if (!shared()) return in.offsets;
  append_shared_rows<<<1, 256, 0, stream>>>(in.offsets, E_, in.tokens, offsets_);
  check_launch("the shared expert's rows");
  return offsets_;
}

void grouped_rows::combine(const __nv_bfloat16* y, const routed_rows& in, int hidden, float* out, cudaStream_t stream,
                           const float* shared_gate) const {
  shared_rows shared;
  if (this->shared()) {
    shared.expert = E_;
    shared.gate = shared_gate;
  }
  launch_combine_rows(y, in, padding{}, hidden, out, stream, shared);
}

}  // namespace moereg::cuda
