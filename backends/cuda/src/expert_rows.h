// SPDX-License-Identifier: Apache-2.0
// expert_rows.h - what the library GEMM paths (cublas_experts, fp8_experts) share: the routed
// rows as the permutation left them, where a sorted row lives in a (possibly padded) work
// buffer, and the combine that adds each token's K expert outputs in one place.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace moereg::cuda {

// One routed pass as the permutation left it (all device memory).
struct routed_rows {
  const __nv_bfloat16* xb = nullptr;  // [T, H]
  const void* ids = nullptr;          // [T, K] int32 or int64, as the caller passed them
  bool ids_i64 = false;
  const float* weights = nullptr;     // [T, K]
  int tokens = 0, top_k = 0;
  const int* offsets = nullptr;       // [E + 1] first sorted row of each expert
  const int* rank = nullptr;          // [T * K] row of each slot inside its expert; < 0: dropped
  const int* sorted_token = nullptr;  // [T * K] token of each sorted row
};

// The combine reads each token's K rows once; top_k above this is refused.
constexpr int max_combine_top_k = 32;

// Where sorted row r lives in the work buffers: r itself, or in the padded layout (`row0`
// set) slot g * max_rows + (r - row0[g]) of the hit expert g holding it (row0 ascending).
struct padding {
  const int* row0 = nullptr;  // device [groups]; null: unpadded
  int groups = 0;
  int max_rows = 0;
};

// The last i in [0, n) with first[i] <= r (first ascending, first[0] <= r): which group of
// sorted rows holds row r, given each group's first row.
__device__ __forceinline__ int group_of_row(const int* first, int n, int r) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (first[mid] <= r) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ int work_row(int r, const padding& pad) {
  if (!pad.row0) return r;
  const int g = group_of_row(pad.row0, pad.groups, r);
  return g * pad.max_rows + (r - pad.row0[g]);
}

// A shared expert computed as one more expert after the routed ones (`expert` = E: token t's
// row is sorted row offsets[E] + t), its output times gate[t] (or 1 without `gate`).
struct shared_rows {
  int expert = -1;  // < 0: none
  const float* gate = nullptr;
};

// out[t] = sum_k w[t, k] * y[row of slot (t, k)] (+ the shared expert's row, added last)
// (stored, not added: each token summed in one place, no atomics). y: [rows, H] bf16 in
// sorted order (through `pad`).
void launch_combine_rows(const __nv_bfloat16* y, const routed_rows& in, const padding& pad, int hidden, float* out,
                         cudaStream_t stream, const shared_rows& shared = {});

// The rows of a pass of a grouped GEMM engine (fp8_grouped_experts, bf16_grouped_experts): the
// routed experts' sorted rows and, where the layer's shared expert runs in the same launches,
// its rows (every token) after them as expert E.
class grouped_rows {
 public:
  explicit grouped_rows(int experts) : E_(experts) {}
  ~grouped_rows();
  grouped_rows(const grouped_rows&) = delete;
  grouped_rows& operator=(const grouped_rows&) = delete;

  // The shared expert joins the launches (its offsets buffer is allocated; `what` names the engine
  // in an allocation failure).
  void add_shared(const char* what);
  bool shared() const { return offsets_ != nullptr; }
  int experts() const { return E_ + (shared() ? 1 : 0); }
  int shared_count(const routed_rows& in) const { return shared() ? in.tokens : 0; }
  // The most sorted rows a pass has: one per slot, then one per token for the shared expert.
  int bound(const routed_rows& in) const { return in.tokens * in.top_k + shared_count(in); }
  // The GEMMs' expert offsets [experts() + 1]: the routing's, with the shared expert's rows'
  // end appended (enqueued on `stream`) where it joins.
  const int* offsets(const routed_rows& in, cudaStream_t stream);
  // out[t] = the combine of the sorted rows y [rows, hidden] (launch_combine_rows), the shared
  // expert's row times shared_gate[t] (or 1) added where it joined.
  void combine(const __nv_bfloat16* y, const routed_rows& in, int hidden, float* out, cudaStream_t stream,
               const float* shared_gate) const;

 private:
  int E_;
  int* offsets_ = nullptr;  // [E + 2] with the shared expert: the routed offsets, then its rows' end
};

}  // namespace moereg::cuda
