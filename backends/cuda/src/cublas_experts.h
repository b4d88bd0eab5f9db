// SPDX-License-Identifier: Apache-2.0
// cublas_experts.h - the compute-bound expert path: gather rows by expert, gate/up and down as
// cuBLAS GEMMs (one grouped call, or one call per hit expert), SiLU-gating and the weighted
// un-permute as elementwise kernels. cuBLAS is dlopen'ed (libcublas.so.13) on first use, so the
// backend still needs only the driver; without it this path is unavailable and the kernels run.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "expert_rows.h"

namespace moereg::cuda {

// How the per-expert GEMMs are issued:
//   batched: every hit expert padded to the largest expert's row count, one (strided) batched
//            GEMM per projection: one launch, cuBLAS's best kernels, wasted work = the padding;
//   loop:    one cublasGemmEx per hit expert: no padding, one launch per expert (costly when the
//            GEMMs are small: qwen3 shapes at 128 experts are launch-bound);
//   grouped: one cublasGemmGroupedBatchedEx per projection (per-expert sizes, one launch; on
//            CUDA 13.0 / H200 it measured slower than the other two on every shape);
//   automatic: chosen per call from the expert sizes read back (see choose_mode).
enum class cublas_mode { automatic, grouped, loop, batched };
const char* cublas_mode_name(cublas_mode m);

class cublas_experts {
 public:
  // True when libcublas.so.13 and every symbol used here were found; otherwise `why` says what failed.
  static bool available(std::string* why = nullptr);
  static std::string version();

  explicit cublas_experts(cudaStream_t stream);
  ~cublas_experts();
  cublas_experts(const cublas_experts&) = delete;
  cublas_experts& operator=(const cublas_experts&) = delete;

  // Routed experts. The offsets are read back (one stream synchronization), which is what lets
  // cuBLAS get per-expert sizes. out[t] = sum_k w[t, k] * expert_{ids[t, k]}(x[t]), stored (not
  // added: `out` is overwritten, each token summed in one place, no atomics); the shared expert
  // is added after. Returns the mode that ran (never automatic).
  cublas_mode run_routed(const routed_rows& in, const __nv_bfloat16* w13, const __nv_bfloat16* w2, int experts,
                         int hidden, int inter, float* out, cublas_mode mode);
  // One dense expert over all `tokens` rows of xb (the shared expert); row_weight may be null (1).
  void run_dense(const __nv_bfloat16* xb, const __nv_bfloat16* w13, const __nv_bfloat16* w2, int tokens, int hidden,
                 int inter, const float* row_weight, float* out);

 private:
  struct group {
    int n;      // rows of this expert
    int row0;   // first sorted row
    int expert;
  };
  void ensure(size_t rows, int hidden, int inter);
  void ensure_pointers(int n);
  void gemms(const std::vector<group>& groups, const __nv_bfloat16* xs, const __nv_bfloat16* w13,
             const __nv_bfloat16* w2, int hidden, int inter, cublas_mode mode);
  // Padded: expert g's rows sit at [g * max_rows, g * max_rows + n_g) of the work buffers.
  void gemms_batched(const std::vector<group>& groups, int max_rows, int experts, const __nv_bfloat16* w13,
                     const __nv_bfloat16* w2, int hidden, int inter);

  cudaStream_t stream_;
  void* handle_ = nullptr;
  __nv_bfloat16* a_ = nullptr;  // gathered x, then the down output y: [rows, H]
  __nv_bfloat16* g_ = nullptr;  // gate|up: [rows, 2I]
  __nv_bfloat16* h_ = nullptr;  // silu(gate) * up: [rows, I]
  size_t a_elems_ = 0, g_elems_ = 0;
  int* host_offsets_ = nullptr;     // pinned [max E + 1]
  void** host_ptrs_ = nullptr;      // pinned: 6 pointer arrays of the grouped/batched calls, then
                                    // the hit experts' first sorted rows (int, padded mode)
  void** dev_ptrs_ = nullptr;       // device copy of host_ptrs_
  int ptr_capacity_ = 0;            // groups the pointer arrays hold
  int offsets_capacity_ = 0;
};

}  // namespace moereg::cuda
