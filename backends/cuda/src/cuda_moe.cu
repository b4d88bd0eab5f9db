// SPDX-License-Identifier: Apache-2.0
// cuda_moe.cu - a layer's life on the device: create, the workspace, the forward pass (eager
// or through forward_graphs) and the memory calls (see cuda_moe.h). Loading the weights is in
// cuda_moe_load.cu, how a pass is planned (tiles, cuBLAS, the FP8 engines) in cuda_moe_plan.cu,
// routing in cuda_moe_route.cu, the decode launch shapes and the T = 1 F8 matrix-vector pass
// in cuda_moe_decode.cu, the options and describe in cuda_moe_describe.cu.
#include "cuda_moe.h"
#include "cuda_moe_workspace.h"
#include "host_views.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

namespace moereg::cuda {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

using namespace host;


moe_layer::moe_layer(const moereg_moe_weights& w, const moereg_routing_params* r, const moereg_backend_options* o,
                     const tuning& t)
    : tuning_(t) {
  device_ = o ? o->device : 0;
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device_ < 0 || device_ >= count)
    throw invalid_argument("device " + std::to_string(device_) + " requested, " + std::to_string(count) +
                           " CUDA device(s) present");
  check(cudaSetDevice(device_), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
  device_name_ = prop.name;
  sm_major_ = prop.major;
  sm_minor_ = prop.minor;
  sm_count_ = prop.multiProcessorCount;
  if (prop.major < 9)
    throw unsupported("device " + device_name_ + " has compute capability " + std::to_string(prop.major) + "." +
                      std::to_string(prop.minor) + ", this build needs 9.0 (sm_90a)");

  E_ = w.num_experts;
  H_ = w.hidden;
  I_ = w.intermediate;
  Is_ = w.shared_w13.data ? w.shared_intermediate : 0;
  if (E_ <= 0 || H_ <= 0 || I_ <= 0) throw invalid_argument("weights: E, H and I must be positive");
  if (H_ % 8 || I_ % 8 || Is_ % 8)
    throw unsupported("weights: hidden " + std::to_string(H_) + ", intermediate " + std::to_string(I_) +
                      ", shared " + std::to_string(Is_) + "; the CUDA kernels need multiples of 8");
  if (E_ > 1024) throw unsupported("weights: " + std::to_string(E_) + " experts, the CUDA backend handles at most 1024");
  if (w.weight_quant != MOEREG_WEIGHT_QUANT_NONE)
    throw unsupported(std::string("weights: ") +
                      (w.weight_quant == MOEREG_WEIGHT_QUANT_INT4    ? "int4"
                       : w.weight_quant == MOEREG_WEIGHT_QUANT_MXFP4 ? "MXFP4"
                       : w.weight_quant == MOEREG_WEIGHT_QUANT_GGML  ? "GGUF block"
                                                                     : "quantized") +
                      " experts are not read by the CUDA backend (it reads BF16, F16, F32 and F8_E4M3 with block scales)");
  expect(w.w13, "weights.w13", {E_, 2 * I_, H_});
  expect(w.w2, "weights.w2", {E_, H_, I_});
  f8_ = w.w13.dtype == MOEREG_DTYPE_F8_E4M3 || w.w2.dtype == MOEREG_DTYPE_F8_E4M3;
  if (f8_) check_f8(w);
  else if (w.w13_scale.data || w.w2_scale.data)
    throw invalid_argument(std::string("weights: scales given with ") + dtype_name(w.w13.dtype) +
                           " experts (scales go with F8_E4M3 weights)");
  if (Is_) {
    expect(w.shared_w13, "weights.shared_w13", {2 * Is_, H_});
    expect(w.shared_w2, "weights.shared_w2", {H_, Is_});
    if (w.shared_gate.data) {
      expect(w.shared_gate, "weights.shared_gate", {1, H_});
      has_shared_gate_ = true;
    }
    shared_f8_ = w.shared_w13.dtype == MOEREG_DTYPE_F8_E4M3 || w.shared_w2.dtype == MOEREG_DTYPE_F8_E4M3;
    if (shared_f8_) check_shared_f8(w);
  }
  if (!shared_f8_ && (w.shared_w13_scale.data || w.shared_w2_scale.data))
    throw invalid_argument("weights: shared-expert scales given without an F8_E4M3 shared expert");
  shared_grouped_ = Is_ && shared_f8_ && f8_ && tuning_.f8_gemm == "wgmma" &&
                    fp8_grouped_experts::shares_with(I_, Is_, tuning_.f8_gather) && f8_tensor_cores();

  if (tuning_.tiles == "wgmma") {
    std::string why;
    if (f8_) why = "F8_E4M3 experts (their tensor-core GEMM is f8_activations=e4m3 with f8_gemm=wgmma)";
    else bf16_grouped_experts::fits(E_, H_, I_, &why);
    if (!why.empty()) throw unsupported("backend option tiles=wgmma runs the grouped bf16 GEMM: " + why);
  }
  check(cudaStreamCreate(&own_stream_), "cudaStreamCreate");
  stream_ = own_stream_;
  if (tuning_.graphs) check(cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  if (Is_) {
    check(cudaStreamCreateWithFlags(&shared_stream_, cudaStreamNonBlocking), "cudaStreamCreate (shared expert)");
    check(cudaEventCreateWithFlags(&shared_fork_, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&shared_join_, cudaEventDisableTiming), "cudaEventCreate");
  }
  if (w.w13.memory == MOEREG_MEMORY_DEVICE) {
    borrow(w);
  } else {
    copy_in(w);
  }

  if (r) {
    K_ = r->top_k;
    if (r->num_experts != E_)
      throw invalid_argument("routing.num_experts " + std::to_string(r->num_experts) + ", expected " +
                             std::to_string(E_) + " (the weights' E)");
    if (K_ < 1 || K_ > 32 || K_ > E_)
      throw invalid_argument("routing.top_k " + std::to_string(K_) + ", expected 1..min(32, E)");
    rcfg_.num_experts = static_cast<int>(E_);
    rcfg_.top_k = K_;
    rcfg_.sigmoid = r->scoring == MOEREG_SCORING_SIGMOID;
    rcfg_.round_logits = !r->logits_in_f32;
    rcfg_.n_group = r->n_group > 1 ? r->n_group : 1;
    rcfg_.topk_group = r->topk_group;
    rcfg_.group_score = r->group_score;
    rcfg_.renormalize = r->renormalize;
    rcfg_.renorm_eps = r->renorm_eps;
    rcfg_.scaling = r->routed_scaling_factor;
    if (rcfg_.n_group > 1 && rcfg_.group_score != MOEREG_GROUP_SCORE_NONE) {
      if (E_ % rcfg_.n_group || rcfg_.n_group > 64 || rcfg_.topk_group < 1 || rcfg_.topk_group > rcfg_.n_group)
        throw invalid_argument("routing: n_group " + std::to_string(rcfg_.n_group) + ", topk_group " +
                               std::to_string(rcfg_.topk_group) + " do not fit E = " + std::to_string(E_));
      if (static_cast<long long>(rcfg_.topk_group) * (E_ / rcfg_.n_group) < K_)
        throw invalid_argument("routing: the kept groups hold fewer than top_k experts");
    }
    if (r->router.data) {
      expect(r->router, "routing.router", {E_, H_});
      std::vector<float> rw = host_floats(on_host(r->router, "routing.router"), "routing.router");
      check(cudaMalloc(reinterpret_cast<void**>(&router_), rw.size() * 4), "cudaMalloc (router)");
      check(cudaMemcpy(router_, rw.data(), rw.size() * 4, cudaMemcpyHostToDevice), "router upload");
      has_router_ = true;
      if (r->router_bias.data) {
        expect(r->router_bias, "routing.router_bias", {E_});
        std::vector<float> b = host_floats(on_host(r->router_bias, "routing.router_bias"), "routing.router_bias");
        check(cudaMalloc(reinterpret_cast<void**>(&bias_), b.size() * 4), "cudaMalloc (router bias)");
        check(cudaMemcpy(bias_, b.data(), b.size() * 4, cudaMemcpyHostToDevice), "router bias upload");
        has_bias_ = true;
      }
    }
  }
  std::vector<std::vector<char>>().swap(staged_);  // the router is on the device now
  if (!borrowed_) measure_h2d();  // the ceiling of the upload's GB/s; nothing was uploaded otherwise
}

moe_layer::~moe_layer() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (shared_stream_) cudaStreamSynchronize(shared_stream_);
  blas_.reset();
  if (!borrowed_)
    for (void* p : {static_cast<void*>(w13_), static_cast<void*>(w2_), static_cast<void*>(sw13_), static_cast<void*>(sw2_),
                    static_cast<void*>(sgate_), static_cast<void*>(w13_f8_), static_cast<void*>(w2_f8_),
                    static_cast<void*>(w13_scale_), static_cast<void*>(w2_scale_), static_cast<void*>(sw13_f8_),
                    static_cast<void*>(sw2_f8_), static_cast<void*>(sw13_scale_), static_cast<void*>(sw2_scale_)})
      if (p) cudaFree(p);
  for (void* p : {static_cast<void*>(router_), static_cast<void*>(bias_)})
    if (p) cudaFree(p);
  if (ws_) {
    cudaFree(ws_->arena);
    delete ws_;
  }
  graphs_.clear();
  if (capture_stream_) cudaStreamDestroy(capture_stream_);
  if (shared_stream_) cudaStreamDestroy(shared_stream_);
  for (cudaEvent_t e : {shared_fork_, shared_join_})
    if (e) cudaEventDestroy(e);
  if (own_stream_) cudaStreamDestroy(own_stream_);
}

// Pinned staging, two copy streams: the host thread(s) fill buffer b (reading the mapped
// file, converting to bf16 unless raw_bytes) while the copy engine drains the buffers filled before it.
void moe_layer::ensure_workspace(int tokens) {
  if (ws_ && ws_->tokens >= tokens) return;
  const int T = std::max(tokens, ws_ ? ws_->tokens * 2 : 16);
  const size_t TK = static_cast<size_t>(T) * std::max(K_, 1);
  const size_t kmax = TK;
  std::vector<std::pair<void**, size_t>> parts;
  auto* ws = new workspace;
  ws->tokens = T;
  // bf16 rows of h; the T = 1 matrix-vector kernels keep theirs in f32 ([K + 1, max(I, Is)]).
  const size_t hrows = std::max({kmax * I_, static_cast<size_t>(T) * Is_, 2 * static_cast<size_t>(K_ + 1) * std::max(I_, Is_)});
  parts = {{reinterpret_cast<void**>(&ws->xb), T * H_ * 2},
           {reinterpret_cast<void**>(&ws->logits), T * E_ * 4},
           {reinterpret_cast<void**>(&ws->perm.counts), E_ * 4},
           {reinterpret_cast<void**>(&ws->perm.offsets), (E_ + 1) * 4},
           {reinterpret_cast<void**>(&ws->perm.rank), kmax * 4},
           {reinterpret_cast<void**>(&ws->perm.sorted_token), kmax * 4},
           {reinterpret_cast<void**>(&ws->perm.sorted_weight), kmax * 4},
           {reinterpret_cast<void**>(&ws->perm.tile_expert), (kmax + 1) * 4},
           {reinterpret_cast<void**>(&ws->perm.tile_row0), (kmax + 1) * 4},
           {reinterpret_cast<void**>(&ws->perm.num_tiles), 4},
           {reinterpret_cast<void**>(&ws->h), hrows * 2},
           {reinterpret_cast<void**>(&ws->gate), T * 4},
           {reinterpret_cast<void**>(&ws->hs), T * Is_ * 2},
           {reinterpret_cast<void**>(&ws->x_amax), T * 4},
           {reinterpret_cast<void**>(&ws->h_amax), (kmax + T) * 4},  // routed rows, then the shared expert's
           {reinterpret_cast<void**>(&ws->x_in), T * H_ * 4},
           {reinterpret_cast<void**>(&ws->ids_in), kmax * 8},
           {reinterpret_cast<void**>(&ws->w_in), kmax * 4},
           {reinterpret_cast<void**>(&ws->out), T * H_ * 4}};
  size_t total = 0;
  for (auto& p : parts) total += (p.second + 255) / 256 * 256;
  if (ws_) check(cudaStreamSynchronize(stream_), "workspace resize");
  graphs_.clear();  // they point into the arena replaced below
  if (cudaMalloc(&ws->arena, total) != cudaSuccess) {
    cudaGetLastError();
    delete ws;
    throw std::bad_alloc();
  }
  char* cur = static_cast<char*>(ws->arena);
  for (auto& p : parts) {
    *p.first = cur;
    cur += (p.second + 255) / 256 * 256;
  }
  if (ws_) {
    cudaFree(ws_->arena);
    delete ws_;
  }
  ws_ = ws;
}

bool moe_layer::capturing() const {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream_, &st), "cudaStreamIsCapturing");
  return st != cudaStreamCaptureStatusNone;
}

void moe_layer::set_stream(cudaStream_t s) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  check(cudaStreamSynchronize(stream_), "set_stream: previous stream");
  stream_ = s ? s : own_stream_;
  blas_.reset();  // bound to the previous stream; made again on first use
  fp8_blas_.reset();
}

void moe_layer::run_pass(const void* x, bool x_bf16, const void* ids, bool ids_i64, const float* weights, int tokens,
                         float* out, bool capturing) {
  pass_plan pl = plan(tokens);
  // Inside a caller's capture: the cuBLAS path would read expert sizes back to the host, the
  // grouped wgmma path might grow its work buffers (a host synchronization).
  if (capturing) pl.blas = pl.wgmma = false;
  last_tokens_ = tokens;
  if (!pl.blas) {
    last_tiles_ = pl.tiles;
    last_path_ = f8_gemv_applies(pl, tokens)
                     ? std::string("f8_gemv (T = 1: e4m3 rows x f32 x, exact products, block scales per 16-byte chunk)")
                     : tile_name(pl.tiles, f8_, f8_exact(pl.tiles));
    if (slot_tiles_apply(pl, x, x_bf16, ids, tokens, out)) last_path_ += "; T = 1: a tile a top-k slot, no prepare pass";
  }
  if (capturing) {
    last_graph_ = "inside the caller's capture";
    run_experts(pl, x, x_bf16, ids, ids_i64, weights, tokens, out, stream_);
    return;
  }
  if (!tuning_.graphs) {
    run_experts(pl, x, x_bf16, ids, ids_i64, weights, tokens, out, stream_);
    return;
  }
  if (pl.blas) {
    last_graph_ = pl.wgmma ? "none: the grouped wgmma path is not captured (its work buffers grow from the host)"
                           : "none: the cuBLAS path reads the expert sizes back to the host";
    run_experts(pl, x, x_bf16, ids, ids_i64, weights, tokens, out, stream_);
    return;
  }
  // The graph is captured on capture_stream_ and replayed on stream_ (a graph does not
  // remember the stream it was captured on).
  const graph_key key{tokens, x, ids, weights, out, x_bf16, ids_i64};
  const bool replayed = graphs_.run(key, stream_, capture_stream_, [&] {
    run_experts(pl, x, x_bf16, ids, ids_i64, weights, tokens, out, capture_stream_);
  });
  last_graph_ = replayed ? "replayed" : "captured";
}

void moe_layer::run_experts(const pass_plan& pl, const void* x, bool x_bf16, const void* ids, bool ids_i64,
                            const float* weights, int tokens, float* out, cudaStream_t stream) {
  const int K = static_cast<int>(ids ? K_ : 0);
  const int slots = tokens * K;
  const tile_config tc = pl.tiles;
  const int bm = tile_rows(tc);
  if (run_slot_tiles(pl, x, x_bf16, ids, ids_i64, weights, tokens, out, stream)) return;
  // x to bf16, out zeroed, and (small passes) the permutation, in one launch; the exact-product
  // F8 kernels also take each token's largest |x| and a zeroed h_amax from it.
  const bool gemv = f8_gemv_applies(pl, tokens);
  const bool exact = f8_ && !pl.blas && f8_exact(tc) && !gemv;
  // The shared expert runs on the kernels beside the routed ones, or after cuBLAS's routed
  // GEMMs where there is no cuBLAS copy of it (an F8 shared expert with cublas=off), or as a
  // slot of the T = 1 matrix-vector kernels when it is F8 too.
  const bool shared_in_gemv = gemv && shared_f8_;
  // On FP8 tensor cores with the wgmma engine, an F8 shared expert of the routed size is one
  // more expert of the grouped GEMMs (fp8_grouped_experts::add_shared).
  // The same for a bf16 shared expert of the routed size on the grouped wgmma GEMM; of another
  // size it runs on the kernels after the routed experts.
  const bool shared_grouped = pl.blas && (pl.wgmma ? Is_ == I_ : shared_in_grouped());
  const bool shared_kernels =
      Is_ && (!pl.blas || !sw13_ || pl.wgmma) && !shared_in_gemv && !shared_grouped;
  const bool s_exact = shared_kernels && shared_exact(tokens);
  const bool route_here = slots <= prepare_route_slots && E_ <= 1024 && !gemv;
  prepare_args prep;
  prep.x = x;
  prep.x_bf16 = x_bf16;
  prep.tokens = tokens;
  prep.hidden = static_cast<int>(H_);
  prep.xb = ws_->xb;
  prep.amax = exact || s_exact ? ws_->x_amax : nullptr;
  prep.out = out;
  prep.out_count = static_cast<int64_t>(tokens) * H_;
  prep.h_amax = exact || s_exact ? ws_->h_amax : nullptr;
  prep.h_amax_count = s_exact ? static_cast<int64_t>(tokens) * (K_ + 1) : exact ? slots : 0;
  if (route_here) {
    prep.ids = ids;
    prep.ids_i64 = ids_i64;
    prep.weights = weights;
    prep.top_k = K;
    prep.experts = static_cast<int>(E_);
    prep.bm = bm;
    prep.perm = ws_->perm;
  }
  launch_prepare(prep, stream);
  // Kernel path: the shared expert runs on its own stream beside the routed experts (both
  // add into `out` with atomics). Alone, its few weight tiles leave most SMs idle (at T = 1:
  // 32 CTAs for DeepSeek's gate/up); beside the routed GEMMs its bytes stream with theirs.
  const bool shared_beside = Is_ && !pl.blas && !shared_in_gemv;
  if (shared_beside) {
    check(cudaEventRecord(shared_fork_, stream), "shared expert: fork");
    check(cudaStreamWaitEvent(shared_stream_, shared_fork_, 0), "shared expert: fork");
    run_shared_on_kernels(tokens, out, shared_stream_);
    check(cudaEventRecord(shared_join_, shared_stream_), "shared expert: join");
  }
  if (gemv) {
    run_f8_gemv(ids, ids_i64, weights, out, stream);
    if (shared_beside) check(cudaStreamWaitEvent(stream, shared_join_, 0), "shared expert: join");
    return;
  }
  if (!route_here) launch_permute(ids, ids_i64, weights, tokens, K, static_cast<int>(E_), bm, ws_->perm, stream);
  if (pl.blas) {
    routed_rows in;
    in.xb = ws_->xb;
    in.ids = ids;
    in.ids_i64 = ids_i64;
    in.weights = weights;
    in.tokens = tokens;
    in.top_k = K;
    in.offsets = ws_->perm.offsets;
    in.rank = ws_->perm.rank;
    in.sorted_token = ws_->perm.sorted_token;
    if (f8_) {
      try {
        if (tuning_.f8_gemm == "wgmma") {
          const float* gate = nullptr;
          if (shared_grouped && has_shared_gate_) {
            launch_shared_gate(ws_->xb, sgate_, tokens, static_cast<int>(H_), ws_->gate, stream);
            gate = ws_->gate;
          }
          fp8_grouped().run_routed(in, out, stream, gate);
        } else {
          fp8_blas().run_routed(in, w13_f8_, w2_f8_, out);
        }
      } catch (const unsupported& e) {
        if (tuning_.f8_activations == "e4m3") throw;
        // auto: this cuBLASLt cannot run these shapes; the exact-product kernels run this pass
        // and every later one (describe says why).
        fp8_refused_ = e.what();
        pass_plan kernels = pl;
        kernels.blas = false;
        last_tiles_ = pl.tiles;
        last_path_ = tile_name(pl.tiles, f8_, f8_exact(pl.tiles));
        run_experts(kernels, x, x_bf16, ids, ids_i64, weights, tokens, out, stream);
        return;
      }
      last_path_ = tuning_.f8_gemm == "wgmma" ? fp8_grouped().path()
                                              : "cublaslt_fp8 (e4m3 activations per 128 columns, block-scaled FP8 tensor cores)";
    } else if (pl.wgmma) {
      const float* gate = nullptr;
      if (shared_grouped && has_shared_gate_) {
        launch_shared_gate(ws_->xb, sgate_, tokens, static_cast<int>(H_), ws_->gate, stream);
        gate = ws_->gate;
      }
      bf16_grouped().run_routed(in, out, stream, gate);
      last_path_ = bf16_grouped().path();
    } else {
      const cublas_mode mode = blas().run_routed(in, w13_, w2_, static_cast<int>(E_), static_cast<int>(H_),
                                                 static_cast<int>(I_), out, pl.mode);
      last_path_ = cublas_mode_name(mode);
    }
    if (shared_grouped) return;  // done in the grouped GEMMs
    if (shared_kernels) {  // F8 layers without libcublas, an F8 shared expert with cublas=off
      run_shared_on_kernels(tokens, out, stream);
    } else if (Is_) {
      const float* gate = nullptr;
      if (has_shared_gate_) {
        launch_shared_gate(ws_->xb, sgate_, tokens, static_cast<int>(H_), ws_->gate, stream);
        gate = ws_->gate;
      }
      blas().run_dense(ws_->xb, sw13_, sw2_, tokens, static_cast<int>(H_), static_cast<int>(Is_), gate, out);
    }
    return;
  }
  gemm_problem p = routed_problem(ws_->xb, out);
  if (exact) {
    p.x_amax = ws_->x_amax;
    p.h_amax = ws_->h_amax;
  }
  p.offsets = ws_->perm.offsets;
  p.sorted_token = ws_->perm.sorted_token;
  p.sorted_weight = ws_->perm.sorted_weight;
  p.tile_expert = ws_->perm.tile_expert;
  p.tile_row0 = ws_->perm.tile_row0;
  p.num_tiles = ws_->perm.num_tiles;
  p.grid_rows = max_row_tiles(slots, static_cast<int>(E_), bm);
  last_launch_ = launch_experts(p, tc, stream);
  if (shared_beside) check(cudaStreamWaitEvent(stream, shared_join_, 0), "shared expert: join");
}

void moe_layer::run_shared_on_kernels(int tokens, float* out, cudaStream_t stream) {
  const tile_config sc = pick_tiles(tokens, shared_f8_);
  gemm_problem s;
  s.x = ws_->xb;
  s.w13 = sw13_;
  s.w2 = sw2_;
  if (shared_f8_) {
    s.w13_f8 = sw13_f8_;
    s.w2_f8 = sw2_f8_;
    s.w13_scale = sw13_scale_;
    s.w2_scale = sw2_scale_;
    s.scale_b0 = kernel_block(scale_b0_);
    s.scale_b1 = kernel_block(scale_b1_);
    if (shared_exact(tokens)) {  // the prepare kernel filled x_amax and zeroed these rows
      s.x_amax = ws_->x_amax;
      s.h_amax = ws_->h_amax + static_cast<size_t>(tokens) * K_;
    }
  }
  s.hidden = static_cast<int>(H_);
  s.inter = static_cast<int>(Is_);
  s.dense_rows = tokens;
  s.grid_rows = (tokens + tile_rows(sc) - 1) / tile_rows(sc);
  s.h = ws_->hs;
  s.out = out;
  decode_launch(s);
  if (has_shared_gate_) {
    launch_shared_gate(ws_->xb, sgate_, tokens, static_cast<int>(H_), ws_->gate, stream);
    s.sorted_weight = ws_->gate;
  }
  launch_experts(s, sc, stream);
}

void moe_layer::forward(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights,
                        const moereg_tensor_view& out) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  if (ids.rank != 2) throw invalid_argument("topk_ids: rank " + std::to_string(ids.rank) + ", expected [T, K]");
  const long long K = ids.shape[1];
  if (K_ == 0) K_ = static_cast<int>(K);  // created without routing
  if (K != K_) throw invalid_argument("topk_ids: K = " + std::to_string(K) + ", expected " + std::to_string(K_));
  const long long T = check_routing_views(x, ids, weights, K);
  expect(out, "out", {T, H_});
  if (out.dtype != MOEREG_DTYPE_F32) throw invalid_argument("out must be F32");
  const int mem = x.memory;
  if (ids.memory != mem || weights.memory != mem || out.memory != mem)
    throw invalid_argument("x, topk_ids, topk_weights and out must all be in host or all in device memory");
  if (T == 0) return;
  if (T > (1 << 24)) throw unsupported("x: more than 16M tokens in one call");
  const bool captured = capturing();
  if (captured) {
    if (mem != MOEREG_MEMORY_DEVICE)
      throw invalid_argument("forward: host-memory views while the layer's stream is being captured (a capture "
                             "cannot hold their copies and synchronization); pass device views");
    if (!ws_ || ws_->tokens < T)
      throw invalid_argument("forward: T = " + std::to_string(T) +
                             " inside a capture, but the layer's workspace holds " + std::to_string(ws_ ? ws_->tokens : 0) +
                             " tokens and cannot grow there; run one uncaptured forward with at least " +
                             std::to_string(T) + " tokens first");
  }
  ensure_workspace(static_cast<int>(T));
  const bool xb = x.dtype == MOEREG_DTYPE_BF16, i64 = ids.dtype == MOEREG_DTYPE_I64;
  if (mem == MOEREG_MEMORY_DEVICE) {
    run_pass(x.data, xb, ids.data, i64, static_cast<const float*>(weights.data), static_cast<int>(T),
             static_cast<float*>(out.data), captured);
    check(cudaGetLastError(), "forward");
    return;
  }
  // Host memory: check the ids here (the device path drops bad ids, it cannot report them).
  for (long long i = 0; i < T * K; ++i) {
    long long e = i64 ? static_cast<const int64_t*>(ids.data)[i] : static_cast<const int32_t*>(ids.data)[i];
    if (e < 0 || e >= E_)
      throw invalid_argument("topk_ids[" + std::to_string(i / K) + ", " + std::to_string(i % K) + "] = " +
                             std::to_string(e) + ", expected 0 <= id < " + std::to_string(E_));
  }
  const size_t xbytes = static_cast<size_t>(T * H_) * elem_size(x.dtype);
  check(cudaMemcpyAsync(ws_->x_in, x.data, xbytes, cudaMemcpyHostToDevice, stream_), "x upload");
  check(cudaMemcpyAsync(ws_->ids_in, ids.data, static_cast<size_t>(T * K) * elem_size(ids.dtype),
                        cudaMemcpyHostToDevice, stream_),
        "ids upload");
  check(cudaMemcpyAsync(ws_->w_in, weights.data, static_cast<size_t>(T * K) * 4, cudaMemcpyHostToDevice, stream_),
        "weights upload");
  run_pass(ws_->x_in, xb, ws_->ids_in, i64, ws_->w_in, static_cast<int>(T), ws_->out, false);
  check(cudaMemcpyAsync(out.data, ws_->out, static_cast<size_t>(T * H_) * 4, cudaMemcpyDeviceToHost, stream_),
        "out download");
  check(cudaStreamSynchronize(stream_), "forward");
}

void* moe_layer::alloc(size_t bytes) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    throw std::bad_alloc();
  }
  return p;
}

void moe_layer::release(void* p) {
  if (!p) return;
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);
  cudaFree(p);
}

void moe_layer::copy(void* dst, const void* src, size_t bytes, int kind) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  cudaMemcpyKind k = kind == 0   ? cudaMemcpyHostToDevice
                     : kind == 1 ? cudaMemcpyDeviceToHost
                     : kind == 2 ? cudaMemcpyDeviceToDevice
                                 : throw invalid_argument("copy: kind " + std::to_string(kind) + ", expected 0, 1 or 2");
  check(cudaMemcpyAsync(dst, src, bytes, k, stream_), "copy");
  if (kind != 2) check(cudaStreamSynchronize(stream_), "copy");
}

void moe_layer::synchronize() {
  check(cudaSetDevice(device_), "cudaSetDevice");
  check(cudaStreamSynchronize(stream_), "synchronize");
}

}  // namespace moereg::cuda
