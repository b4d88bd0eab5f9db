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
//   wgmma  = auto | off (default until measured on a GPU) - bf16 experts whose sizes fit it (hidden a multiple of 128,
//            intermediate of 64): from wgmma_min_rows rows per hit expert the grouped wgmma GEMM
//            (one launch a projection, expert offsets on the device) rather than the mma.sync
//            kernels or cuBLAS; off keeps the earlier choice
//   cublas = auto (default: >= 128 rows per hit expert go to cuBLAS when libcublas.so.13 loads)
//          | off (every size on the kernels; libcublas never loaded)
//   graphs = off (default) | on (kernel-path forwards captured once per token count and
//            buffers, then replayed as one CUDA graph: forward_graphs.h)
//   f8_activations = auto (default) | bf16 | e4m3 - F8_E4M3 experts with 128x128 blocks:
//            e4m3 quantizes the activations per 128 columns and runs FP8 tensor cores
//            (~4 % from the dequantized layer), bf16 keeps every size on the exact-product
//            kernels, auto takes e4m3 where bf16 experts would go to cuBLAS (>= 128 rows per
//            hit expert) and the kernels below that.
//   f8_gemm = wgmma (default) | cublaslt - the FP8 tensor-core GEMM: moereg's grouped wgmma
//            kernel (fp8_grouped_experts.h: one launch per projection, no host sync) or
//            cuBLASLt's block-scaled matmul, one per hit expert after the expert
//            offsets are read back (fp8_experts.h). wgmma with f8_gather=off was 1.08-1.12x
//            faster than cuBLASLt at T = 1024 and within 1 % at 4096 on the H100s of sessions
//            17, 19 and 21 (bench/cuda/f8_gemm_ab.sh; docs/cuda.md)
//   f8_gather = off (default) | on - wgmma engine: off quantizes each routed row into its own
//            sorted row and the GEMM reads rows by TMA; on quantizes x once per token and the
//            gate/up GEMM gathers the routed rows' tokens with cp.async (off was 1-11 % faster
//            in each of those three runs: docs/cuda.md)
//   f8_tile = 128x256 (default) | 128x128 - wgmma engine with f8_gather=off: the GEMM's tile
//            (rows x output columns); 128x256 where the columns are a multiple of 256 (else
//            128x128): each A tile read from L2 once for twice the columns; bit-identical to
//            128x128 (tested); 1.05-1.10x faster than 128x128 at T = 1024-4096 on an H100
//            (session 22, docs/cuda.md)
//   f8_silu = separate (default) | fused - with 128x256 tiles: h = SiLU(gate) * up and its
//            e4m3 quantization in a kernel of their own after the gate/up GEMM, or in that
//            GEMM's epilogue (each tile 128 gate + the matching 128 up columns: no bf16 gate/up
//            buffer, 2I bf16 bytes a routed row less memory, but 2-11 % slower on an H100)
//   f8_decode = gemv (default) | mma - F8_E4M3 experts at T = 1: matrix-vector kernels that
//            read each weight row straight into registers (f8_gemv.cuh; the top-k experts and
//            an F8 shared expert in two launches; where the blocks fit and tiles=auto), or the
//            exact-product mma tiles (H100: 0.161 against 0.174 ms for deepseek_v3_e64)
//   pdl    = on (default) | off - programmatic dependent launch of the expert GEMMs (the down
//            GEMM streams its first weight tiles while gate/up finishes)
//   narrow = auto (default) | fill | off - m16 GEMMs whose 128-column grid would not fill the
//            SMs run 64-column tiles (twice the CTAs); fill takes the widest of 128, 64 and 32
//            (bf16) columns that gives two CTAs an SM; off keeps 128 columns
//   slot_tiles = auto (default) | off - T = 1 on bf16 x without a shared expert runs the two
//            GEMMs alone, each top-k slot a tile read straight from the ids (no prepare kernel)
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
  bool wgmma = false;
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
  long long bf16_cublas_min_rows() const { return 2 * I_ * H_ * 2 > large_expert_bytes ? 64 : cublas_min_rows; }
  bool pick_cublas(long long rows, long long groups, cublas_mode* mode) const;
  // bf16 experts from this many rows per hit expert run the grouped wgmma GEMM (wgmma=auto).
  static constexpr long long wgmma_min_rows = 48;
  // Whether bf16 experts can run the grouped wgmma GEMM; else `why` says why not.
  bool bf16_wgmma_fits(std::string* why = nullptr) const;
  bool pick_wgmma(long long rows, long long groups) const;
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
    bool wgmma = false;  // bf16 experts on the grouped wgmma GEMM (with blas set)
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
