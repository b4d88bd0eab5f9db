// SPDX-License-Identifier: Apache-2.0
// cuda_moe.h - one MoE layer resident on a CUDA device: its experts in bf16 (copied from host
// memory at create, or the caller's device memory read in place) or as stored F8_E4M3 bytes
// with their block scales (copied from host memory), its router, and a
// workspace that grows to the largest token count seen (so forward allocates nothing once
// warm). Device-memory calls are asynchronous on the layer's stream, which is a blocking
// stream: it orders itself after, and before, work on the legacy default stream.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bf16_grouped_experts.h"
#include "cublas_experts.h"
#include "fp8_experts.h"
#include "f8_gemv.cuh"
#include "fp8_grouped_experts.h"
#include "forward_graphs.h"
#include "moe_kernels.cuh"
#include "moereg/abi/moereg_backend.h"

namespace moereg::cuda {

struct staging;  // pinned buffers and copy streams of one create (cuda_moe.cu)

// Thrown for caller mistakes (shapes, dtypes, ids) and inputs this backend does not handle
// (F8 weights, odd sizes): the SDK's error kinds, which MOEREG_API_END maps to
// MOEREG_INVALID_ARGUMENT and MOEREG_UNSUPPORTED.
using invalid_argument = moereg::plugin::invalid_argument;
using unsupported = moereg::plugin::unsupported;

// Throws std::runtime_error naming `what` when a CUDA call failed.
void check(cudaError_t e, const char* what);

// The backend options (`--backend-option key=value`, docs/cuda.md) - measurement and test
// knobs, read once at create:
//   tiles  = auto (default) | m16 | m64 | m128 (force one kernel tile shape for every size)
//          | cublas | cublas_loop | cublas_batched | cublas_auto (force the cuBLAS path: grouped,
//            one call per expert, batched, or chosen from the expert sizes)
//          | wgmma (force the grouped wgmma GEMM: bf16 experts, bf16_grouped_experts.h)
//   wgmma  = auto (default) | off - bf16 experts whose sizes fit it (hidden a multiple of 128,
//            intermediate of 64): the grouped wgmma GEMM for passes of wgmma_min_rows or more
//            rows per expert on average that do not go to cuBLAS (H200, session 26: 7-15 % ahead
//            of the mma.sync kernels there on all three shapes, behind them below; docs/cuda.md);
//            off keeps the kernels there, as graphs=on does (the grouped path is not captured yet)
//   wgmma_silu = separate (default) | fused - that GEMM's SiLU(gate) * up in its own pass or in
//            the gate/up epilogue (I a multiple of 128; the same bits)
//   wgmma_gather = off (default) | on - that GEMM's gate/up reads the routed rows of x through
//            the routing's index instead of a sorted copy (the same bits)
struct tuning {
  std::string tiles = "auto";
  std::string f8_activations = "auto";
  std::string f8_gemm = "wgmma";
  bool f8_gather = false;
  std::string f8_tile = "128x256";
  std::string f8_silu = "separate";
  std::string f8_decode = "gemv";
  bool pdl = true;
  bool cublas = true;
  bool graphs = false;
  std::string narrow = "auto";
  bool slot_tiles = true;
  bool wgmma = true;
  std::string wgmma_silu = "separate";
  bool wgmma_gather = false;
  // Throws invalid_argument naming the key and what it accepts.
  static tuning parse(const moereg_backend_option* kv, size_t count);
};

class moe_layer {
 public:
  moe_layer(const moereg_moe_weights& w, const moereg_routing_params* r, const moereg_backend_options* o,
            const tuning& t = {});
  ~moe_layer();
  moe_layer(const moe_layer&) = delete;
  moe_layer& operator=(const moe_layer&) = delete;

  void forward(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights,
               const moereg_tensor_view& out);
  void route(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights);

  // The caller's stream (moereg_cuda_stream.h), or nullptr for the layer's own. Waits for the
  // work queued on the previous stream first.
  void set_stream(cudaStream_t s);

  void* alloc(size_t bytes);
  void release(void* p);
  void copy(void* dst, const void* src, size_t bytes, int kind);
  void synchronize();
  std::string describe() const;

 private:
  struct workspace;
  void ensure_workspace(int tokens);
  void copy_in(const moereg_moe_weights& w);
  void borrow(const moereg_moe_weights& w);
  moereg_tensor_view on_host(const moereg_tensor_view& v, const char* what);
  // F8_E4M3 experts: checks the scales and the sizes the F8 kernels need (the constructor
  // has checked the weights' shapes).
  void check_f8(const moereg_moe_weights& w);
  // An F8_E4M3 shared expert: its scales on scale_block's grid and the sizes the kernels need.
  void check_shared_f8(const moereg_moe_weights& w);
  // Whether the shared expert of a pass of `tokens` tokens runs the exact-product F8 kernels
  // (which need each token's largest |x| and zeroed row maxima, from the prepare kernel).
  bool shared_exact(int tokens) const;
  long long f8_scale_bytes() const;  // the F8 experts' scales, as held on the device
  // How upload stages a tensor: converted to bf16 (BF16, F16, F32 weights), byte for byte
  // (F32 scales), or e4m3 bytes in fragment order (F8_E4M3 weights: host::stage_f8_fragments).
  enum class staged { bf16, bytes, f8_fragments };
  // Copies src to dst through the pinned buffers.
  void upload(void* dst, const moereg_tensor_view& src, const char* what, staging& st, staged how = staged::bf16);
  void measure_h2d();
  tile_config pick_tiles(int rows_per_group) const { return pick_tiles(rows_per_group, f8_); }
  tile_config pick_tiles(int rows_per_group, bool f8) const;
  bool f8_exact(tile_config c) const;  // F8 experts on the exact-product kernels (moe_kernels.cuh)
  // A scale block as the kernels take it: one wider than every row is one scale per row, so it
  // is clamped to max(H, I) (the block index stays 0 and fits an int).
  int kernel_block(long long b) const;
  // Whether this pass goes through cuBLAS (and how): forced by tiles=cublas|cublas_loop|
  // cublas_batched|cublas_auto, else chosen for >= 128 rows per hit expert when libcublas.so.13
  // loads, unless cublas=off. F8 experts: cuBLASLt's FP8 matmul as f8_activations says.
  // Below this many rows per hit expert the mma.sync kernels win (weights streamed, no host sync).
  static constexpr long long cublas_min_rows = 128;
  // Experts whose gate/up weights exceed large_expert_bytes (16 MiB: they are not re-read from
  // L2) go to cuBLAS from 64 rows: past 64 rows the m64 kernel's second row tile reads the
  // expert's weights again from memory (mixtral, H100: 96 rows per expert 1.72 ms on the
  // kernels, 1.08 ms batched; 48 rows 0.98 vs 1.04).
  static constexpr long long large_expert_bytes = 16ll << 20;
  bool large_experts() const { return 2 * I_ * H_ * 2 > large_expert_bytes; }  // bf16 gate/up bytes
  long long bf16_cublas_min_rows() const { return large_experts() ? 64 : cublas_min_rows; }
  bool pick_cublas(long long rows, long long groups, cublas_mode* mode) const;
  // Whether bf16 experts can run the grouped wgmma GEMM; else `why` says why not.
  bool bf16_wgmma_fits(std::string* why = nullptr) const;
  // Whether a pass of `slots` routed rows runs the grouped wgmma GEMM: tiles=wgmma, or (wgmma=auto)
  // bf16 experts, slots >= wgmma_min_rows * E, a pass cuBLAS does not take, graphs=off.
  static constexpr long long wgmma_min_rows = 32;
  bool pick_wgmma(long long slots, bool cublas_taken) const;
  bf16_grouped_experts& bf16_grouped();
  cublas_experts& blas();
  fp8_experts& fp8_blas();
  fp8_grouped_experts& fp8_grouped();
  // Whether F8 experts can run on FP8 tensor cores with the f8_gemm engine; else `why` says.
  bool f8_tensor_cores(std::string* why = nullptr) const;
  // Whether an F8 shared expert runs in the grouped FP8 GEMM's launches as one more expert
  // (the wgmma engine, gather off, Is == I) on the passes that take FP8 tensor cores; such a
  // layer keeps no bf16 copy of it. Decided at create.
  bool shared_in_grouped() const { return shared_grouped_; }
  std::string f8_large() const;  // describe's gemm_large for F8 experts
  std::string bf16_large() const;  // and for bf16 experts
  // How a pass of `tokens` tokens runs: the tile shape, or cuBLAS (which reads the expert
  // sizes back to the host, so it cannot be captured in a graph).
  struct pass_plan {
    tile_config tiles;
    bool blas;          // the routed rows go to a library-style GEMM path (cuBLAS, cuBLASLt, wgmma)
    cublas_mode mode;
    bool wgmma = true;  // bf16 experts on the grouped wgmma GEMM (with blas set)
  };
  pass_plan plan(int tokens) const;
  // Enqueues one pass on `stream`; with graphs=on a kernel pass goes through graphs_.
  void run_pass(const void* x, bool x_bf16, const void* ids, bool ids_i64, const float* weights, int tokens,
                float* out, bool capturing);
  bool capturing() const;  // whether stream_ is being captured into a caller's graph
  void run_shared_on_kernels(int tokens, float* out, cudaStream_t stream);
  // f8_decode=gemv: whether this pass runs the T = 1 matrix-vector kernels (f8_gemv.cuh), and
  // running them (the routed slots, and the shared expert when it is F8) on ws_->xb.
  bool f8_gemv_applies(const pass_plan& pl, int tokens) const;
  void run_f8_gemv(const void* ids, bool ids_i64, const float* weights, float* out, cudaStream_t stream);
  void decode_launch(gemm_problem& p) const;  // the pdl and narrow options into a GEMM's problem
  // The routed experts' GEMM problem on bf16 rows x, adding into out: weights (bf16, or F8 with
  // their scale blocks), sizes, h, launch shape; the caller says how rows map to experts.
  gemm_problem routed_problem(const __nv_bfloat16* x, float* out) const;
  // x [T, H] F32 or BF16, ids [T, K] I32 or I64, weights [T, K] F32; returns T. Throws
  // invalid_argument naming the view otherwise (forward and route).
  long long check_routing_views(const moereg_tensor_view& x, const moereg_tensor_view& ids,
                                const moereg_tensor_view& weights, long long K) const;
  // T = 1 on bf16 x without a shared expert (and slot_tiles=auto): the pass as the two GEMMs
  // alone, each top-k slot a tile (moe_kernels.cuh); false where it does not apply.
  bool slot_tiles_apply(const pass_plan& pl, const void* x, bool x_bf16, const void* ids, int tokens,
                        const float* out) const;
  bool run_slot_tiles(const pass_plan& pl, const void* x, bool x_bf16, const void* ids, bool ids_i64,
                      const float* weights, int tokens, float* out, cudaStream_t stream);  // the shared expert, ws_->xb in
  void run_experts(const pass_plan& plan, const void* x, bool x_bf16, const void* ids, bool ids_i64,
                   const float* weights, int tokens, float* out, cudaStream_t stream);

  int device_ = 0;
  cudaStream_t stream_ = nullptr;      // where the layer's work goes: own_stream_ or the caller's
  cudaStream_t own_stream_ = nullptr;  // a blocking stream, made at create
  // graphs=on: captures happen on this non-blocking stream, so they never touch the legacy
  // default stream (which a capture on a blocking stream would make unusable meanwhile).
  cudaStream_t capture_stream_ = nullptr;
  // The shared expert's stream (non-blocking) and the events that fork it from and join it
  // back to the layer's stream; inside a capture the fork and join become graph edges.
  cudaStream_t shared_stream_ = nullptr;
  cudaEvent_t shared_fork_ = nullptr, shared_join_ = nullptr;
  graph_cache graphs_;
  std::string last_graph_ = "off";
  std::string device_name_;
  int sm_major_ = 0, sm_minor_ = 0, sm_count_ = 0;
  long long E_ = 0, H_ = 0, I_ = 0, Is_ = 0;
  int K_ = 0;
  bool has_router_ = false, has_bias_ = false, has_shared_gate_ = false;
  route_config rcfg_;
  __nv_bfloat16* w13_ = nullptr;  // bf16 experts (null with F8 experts)
  __nv_bfloat16* w2_ = nullptr;
  bool f8_ = false;               // F8_E4M3 experts: the bytes and block scales below
  uint8_t* w13_f8_ = nullptr;
  uint8_t* w2_f8_ = nullptr;
  float* w13_scale_ = nullptr;
  float* w2_scale_ = nullptr;
  long long scale_b0_ = 0, scale_b1_ = 0;
  // The shared expert in bf16. With an F8_E4M3 shared expert (plugin API 3) this is its
  // dequantized copy for passes on cuBLAS only (null when cuBLAS is off), and the kernels read
  // the bytes and scales below: half the bytes at decode.
  __nv_bfloat16* sw13_ = nullptr;
  __nv_bfloat16* sw2_ = nullptr;
  bool shared_f8_ = false;
  bool shared_grouped_ = false;  // shared_in_grouped()
  uint8_t* sw13_f8_ = nullptr;
  uint8_t* sw2_f8_ = nullptr;
  float* sw13_scale_ = nullptr;
  float* sw2_scale_ = nullptr;
  __nv_bfloat16* sgate_ = nullptr;
  float* router_ = nullptr;
  float* bias_ = nullptr;
  bool borrowed_ = false;               // the expert weights are the caller's device memory: never freed here
  std::vector<std::vector<char>> staged_;  // device routing tensors copied down, during create only
  size_t weight_bytes_ = 0;
  double load_seconds_ = 0, load_gbps_ = 0, h2d_gbps_ = 0;
  tile_config last_tiles_ = tile_config::m16;
  launch_shape last_launch_;  // of the last kernel-path pass's routed experts
  int last_tokens_ = 0;
  tuning tuning_;
  std::string last_path_;
  std::unique_ptr<cublas_experts> blas_;
  std::unique_ptr<fp8_experts> fp8_blas_;
  std::unique_ptr<fp8_grouped_experts> fp8_grouped_;
  std::unique_ptr<bf16_grouped_experts> bf16_grouped_;
  std::string fp8_refused_;  // why cuBLASLt could not run these F8 shapes (f8_activations=auto falls back)
  workspace* ws_ = nullptr;
};

}  // namespace moereg::cuda
