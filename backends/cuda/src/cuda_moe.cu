// SPDX-License-Identifier: Apache-2.0
// cuda_moe.cu - loading a layer onto the device and running it (see cuda_moe.h).
#include "cuda_moe.h"
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

namespace {

using namespace host;

constexpr size_t stage_elems = size_t(16) << 20;  // 32 MiB of bf16 per staging buffer
constexpr int stage_buffers = 4;

}  // namespace

// Pinned staging buffers, their events and two copy streams, made once per create and shared
// by every tensor it uploads: pinning 128 MiB costs tens of milliseconds, which per tensor
// was a large part of loading a small layer.
struct staging {
  void* bufs[stage_buffers] = {};
  cudaEvent_t done[stage_buffers] = {};
  cudaStream_t streams[2] = {};
  size_t chunk = 0;  // chunks issued so far: picks the buffer and the stream
  staging() {
    try {
      for (int b = 0; b < stage_buffers; ++b) {
        check(cudaMallocHost(&bufs[b], stage_elems * 2), "cudaMallocHost (staging)");
        check(cudaEventCreateWithFlags(&done[b], cudaEventDisableTiming), "cudaEventCreate");
      }
      for (auto& st : streams) check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate");
    } catch (...) {
      release();
      throw;
    }
  }
  ~staging() { release(); }
  staging(const staging&) = delete;
  staging& operator=(const staging&) = delete;
  void release() {
    for (auto& st : streams)
      if (st) {
        cudaStreamSynchronize(st);
        cudaStreamDestroy(st);
        st = nullptr;
      }
    for (int b = 0; b < stage_buffers; ++b) {
      if (done[b]) cudaEventDestroy(done[b]);
      if (bufs[b]) cudaFreeHost(bufs[b]);
      done[b] = nullptr;
      bufs[b] = nullptr;
    }
  }
};

// One device arena carved into the per-forward buffers; reallocated when T grows.
struct moe_layer::workspace {
  int tokens = 0;
  void* arena = nullptr;
  __nv_bfloat16* xb = nullptr;
  float* logits = nullptr;
  permutation perm;
  __nv_bfloat16* h = nullptr;
  float* gate = nullptr;
  void* x_in = nullptr;  // host-path staging: x (up to f32), ids (i64), weights, out
  int64_t* ids_in = nullptr;
  float* w_in = nullptr;
  float* out = nullptr;
};

tuning tuning::parse(const moereg_backend_option* kv, size_t count) {
  tuning t;
  for (size_t i = 0; i < count; ++i) {
    const std::string key = kv[i].key ? kv[i].key : "", value = kv[i].value ? kv[i].value : "";
    if (key == "tiles") {
      static const char* ok[] = {"auto", "m16", "m64", "m128", "cublas", "cublas_loop", "cublas_batched", "cublas_auto"};
      bool known = false;
      for (const char* v : ok) known |= value == v;
      if (!known)
        throw invalid_argument("backend option tiles='" + value +
                               "': expected auto, m16, m64, m128, cublas, cublas_loop, cublas_batched or cublas_auto");
      t.tiles = value;
    } else if (key == "cublas") {
      if (value != "auto" && value != "off") throw invalid_argument("backend option cublas='" + value + "': expected auto or off");
      t.cublas = value == "auto";
    } else if (key == "graphs") {
      if (value != "on" && value != "off") throw invalid_argument("backend option graphs='" + value + "': expected on or off");
      t.graphs = value == "on";
    } else {
      throw invalid_argument("backend option '" + key + "' is not a cuda backend option (it takes tiles, cublas, graphs)");
    }
  }
  return t;
}

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
  }

  check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  if (tuning_.graphs) check(cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
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

void moe_layer::check_f8(const moereg_moe_weights& w) {
  if (w.w13.dtype != MOEREG_DTYPE_F8_E4M3 || w.w2.dtype != MOEREG_DTYPE_F8_E4M3)
    throw unsupported(std::string("weights: w13 ") + dtype_name(w.w13.dtype) + ", w2 " + dtype_name(w.w2.dtype) +
                      "; F8_E4M3 experts need both in F8_E4M3");
  if (w.w13.memory == MOEREG_MEMORY_DEVICE)
    throw unsupported("weights.w13: F8_E4M3 weights in device memory; the CUDA backend reads device-resident BF16 "
                      "weights only (F8_E4M3 from host memory)");
  scale_b0_ = w.scale_block[0];
  scale_b1_ = w.scale_block[1];
  if (!w.w13_scale.data || !w.w2_scale.data || scale_b0_ <= 0 || scale_b1_ <= 0)
    throw invalid_argument("weights: F8_E4M3 experts need w13_scale, w2_scale and a positive scale_block, found scale_block {" +
                           std::to_string(scale_b0_) + ", " + std::to_string(scale_b1_) + "}");
  if (H_ % 16 || I_ % 16)
    throw unsupported("weights: hidden " + std::to_string(H_) + ", intermediate " + std::to_string(I_) +
                      "; the CUDA F8_E4M3 kernels need multiples of 16");
  if (scale_b1_ % 8 && scale_b1_ < std::max(H_, I_))
    throw unsupported("weights: scale_block {" + std::to_string(scale_b0_) + ", " + std::to_string(scale_b1_) +
                      "}; the CUDA F8_E4M3 kernels need scale columns that are a multiple of 8 or cover a whole row");
  auto cdiv = [](long long a, long long b) { return (a + b - 1) / b; };
  for (const auto* v : {&w.w13_scale, &w.w2_scale})
    if (v->dtype != MOEREG_DTYPE_F32)
      throw unsupported(std::string(v == &w.w13_scale ? "weights.w13_scale" : "weights.w2_scale") + ": dtype " +
                        dtype_name(v->dtype) + ", expected F32");
  expect(w.w13_scale, "weights.w13_scale", {E_, 2 * cdiv(I_, scale_b0_), cdiv(H_, scale_b1_)});
  expect(w.w2_scale, "weights.w2_scale", {E_, cdiv(H_, scale_b0_), cdiv(I_, scale_b1_)});
  if (tuning_.tiles.rfind("cublas", 0) == 0)
    throw unsupported("backend option tiles=" + tuning_.tiles +
                      ": the cuBLAS path runs BF16 experts; F8_E4M3 experts run on the kernels (tiles=auto|m16|m64|m128)");
}

// Host weights (a mapped checkpoint, numpy arrays): one copy on the device, made here, in bf16
// or, for F8_E4M3 experts, as stored (bytes and F32 block scales).
void moe_layer::copy_in(const moereg_moe_weights& w) {
  auto dalloc = [&](size_t bytes) {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes), "cudaMalloc (weights)");
    weight_bytes_ += bytes;
    return p;
  };
  const size_t n13 = static_cast<size_t>(E_ * 2 * I_ * H_), n2 = static_cast<size_t>(E_ * H_ * I_);
  if (f8_) {
    w13_f8_ = static_cast<uint8_t*>(dalloc(n13));
    w2_f8_ = static_cast<uint8_t*>(dalloc(n2));
    w13_scale_ = static_cast<float*>(dalloc(static_cast<size_t>(numel(w.w13_scale)) * 4));
    w2_scale_ = static_cast<float*>(dalloc(static_cast<size_t>(numel(w.w2_scale)) * 4));
  } else {
    w13_ = static_cast<__nv_bfloat16*>(dalloc(n13 * 2));
    w2_ = static_cast<__nv_bfloat16*>(dalloc(n2 * 2));
  }
  if (Is_) {
    sw13_ = static_cast<__nv_bfloat16*>(dalloc(static_cast<size_t>(2 * Is_ * H_) * 2));
    sw2_ = static_cast<__nv_bfloat16*>(dalloc(static_cast<size_t>(H_ * Is_) * 2));
    if (has_shared_gate_) sgate_ = static_cast<__nv_bfloat16*>(dalloc(static_cast<size_t>(H_) * 2));
  }
  const auto t0 = std::chrono::steady_clock::now();
  {
    staging st;
    if (f8_) {
      upload(w13_f8_, w.w13, "weights.w13", st, staged::f8_fragments);
      upload(w2_f8_, w.w2, "weights.w2", st, staged::f8_fragments);
      upload(w13_scale_, w.w13_scale, "weights.w13_scale", st, staged::bytes);
      upload(w2_scale_, w.w2_scale, "weights.w2_scale", st, staged::bytes);
    } else {
      upload(w13_, w.w13, "weights.w13", st);
      upload(w2_, w.w2, "weights.w2", st);
    }
    if (Is_) {
      upload(sw13_, w.shared_w13, "weights.shared_w13", st);
      upload(sw2_, w.shared_w2, "weights.shared_w2", st);
      if (has_shared_gate_) upload(sgate_, w.shared_gate, "weights.shared_gate", st);
    }
    for (auto& stream : st.streams) check(cudaStreamSynchronize(stream), "weights copy");
  }
  load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  load_gbps_ = load_seconds_ > 0 ? weight_bytes_ / load_seconds_ / 1e9 : 0;
}

// Device weights (a framework's parameters, already on this device): read where they lie,
// so the layer holds no copy and must not free them. bf16 only: converting F16/F32 would need
// the copy this path exists to avoid.
void moe_layer::borrow(const moereg_moe_weights& w) {
  auto device_bf16 = [&](const moereg_tensor_view& v, const char* what) {
    if (v.memory != MOEREG_MEMORY_DEVICE)
      throw invalid_argument(std::string(what) + ": in host memory while weights.w13 is in device memory; expected all "
                             "expert weights in one kind of memory");
    if (v.dtype != MOEREG_DTYPE_BF16)
      throw unsupported(std::string(what) + ": device-resident weights of dtype " + dtype_name(v.dtype) +
                        ", expected BF16 (other dtypes are converted on upload from host memory only)");
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, v.data) != cudaSuccess || (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)) {
      cudaGetLastError();
      throw invalid_argument(std::string(what) + ": marked device memory, but the pointer is not CUDA device memory");
    }
    if (a.device != device_)
      throw invalid_argument(std::string(what) + ": on CUDA device " + std::to_string(a.device) + ", the backend was asked for device " +
                             std::to_string(device_) + " (options.device)");
    return static_cast<__nv_bfloat16*>(v.data);
  };
  borrowed_ = true;
  w13_ = device_bf16(w.w13, "weights.w13");
  w2_ = device_bf16(w.w2, "weights.w2");
  if (Is_) {
    sw13_ = device_bf16(w.shared_w13, "weights.shared_w13");
    sw2_ = device_bf16(w.shared_w2, "weights.shared_w2");
    if (has_shared_gate_) sgate_ = device_bf16(w.shared_gate, "weights.shared_gate");
  }
}

// A small routing tensor (router, bias) readable on the host: device memory is copied down
// (E x H floats at most, once at create).
moereg_tensor_view moe_layer::on_host(const moereg_tensor_view& v, const char* what) {
  if (v.memory != MOEREG_MEMORY_DEVICE) return v;
  if (!contiguous(v)) throw unsupported(std::string(what) + ": strided device view, expected a contiguous tensor");
  const size_t bytes = static_cast<size_t>(numel(v)) * elem_size(v.dtype);
  staged_.emplace_back(bytes);
  check(cudaMemcpy(staged_.back().data(), v.data, bytes, cudaMemcpyDeviceToHost), (std::string(what) + " download").c_str());
  moereg_tensor_view h = v;
  h.data = staged_.back().data();
  h.memory = MOEREG_MEMORY_HOST;
  return h;
}

moe_layer::~moe_layer() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  blas_.reset();
  if (!borrowed_)
    for (void* p : {static_cast<void*>(w13_), static_cast<void*>(w2_), static_cast<void*>(sw13_), static_cast<void*>(sw2_),
                    static_cast<void*>(sgate_), static_cast<void*>(w13_f8_), static_cast<void*>(w2_f8_),
                    static_cast<void*>(w13_scale_), static_cast<void*>(w2_scale_)})
      if (p) cudaFree(p);
  for (void* p : {static_cast<void*>(router_), static_cast<void*>(bias_)})
    if (p) cudaFree(p);
  if (ws_) {
    cudaFree(ws_->arena);
    delete ws_;
  }
  graphs_.clear();
  if (capture_stream_) cudaStreamDestroy(capture_stream_);
  if (stream_) cudaStreamDestroy(stream_);
}

// Pinned staging, two copy streams: the host thread(s) fill buffer b (reading the mapped
// file, converting to bf16 unless raw_bytes) while the copy engine drains the buffers filled before it.
void moe_layer::upload(void* dst, const moereg_tensor_view& src, const char* what, staging& st, staged how) {
  const bool raw_bytes = how != staged::bf16;
  if (src.memory != MOEREG_MEMORY_HOST) throw invalid_argument(std::string(what) + ": expected host memory");
  if (!raw_bytes && src.dtype != MOEREG_DTYPE_BF16 && src.dtype != MOEREG_DTYPE_F16 && src.dtype != MOEREG_DTYPE_F32)
    throw unsupported(std::string(what) + ": dtype " + dtype_name(src.dtype) + ", expected BF16, F16 or F32");
  // Staged in units of 2 bytes (a bf16 element); a raw tensor is its bytes, rounded up to a
  // whole unit (the pinned buffer has the room; only the tensor's bytes are copied).
  const size_t bytes = raw_bytes ? static_cast<size_t>(numel(src)) * elem_size(src.dtype) : 0;
  const size_t n = raw_bytes ? (bytes + 1) / 2 : static_cast<size_t>(numel(src));
  // The host copy into pinned memory is the bottleneck (page faults on a mapped file, memory
  // bandwidth), so it gets up to 16 threads while the copy engine drains the other buffers.
  const int threads = static_cast<int>(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
  try {
    for (size_t first = 0; first < n; first += stage_elems, ++st.chunk) {
      const int b = static_cast<int>(st.chunk % stage_buffers);
      const size_t len = std::min(stage_elems, n - first);
      check(cudaEventSynchronize(st.done[b]), "staging wait");
      size_t copy_bytes = len * 2;
      if (raw_bytes) {
        copy_bytes = std::min(copy_bytes, bytes - first * 2);
        const char* from = static_cast<const char*>(src.data) + first * 2;
        if (how == staged::f8_fragments) stage_f8_fragments(st.bufs[b], from, copy_bytes, threads);
        else stage_bytes(st.bufs[b], from, copy_bytes, threads);
      } else {
        stage_bf16(static_cast<uint16_t*>(st.bufs[b]), src.data, src.dtype, first, len, threads);
      }
      cudaStream_t s = st.streams[st.chunk % 2];
      check(cudaMemcpyAsync(static_cast<char*>(dst) + first * 2, st.bufs[b], copy_bytes, cudaMemcpyHostToDevice, s),
            "weights copy");
      check(cudaEventRecord(st.done[b], s), "cudaEventRecord");
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(what) + ": " + e.what());
  }
}

// Pinned host-to-device bandwidth, best of three 64 MiB copies: the ceiling load GB/s is read against.
void moe_layer::measure_h2d() {
  const size_t bytes = size_t(64) << 20;
  void *h = nullptr, *d = nullptr;
  cudaEvent_t a = nullptr, b = nullptr;
  if (cudaMallocHost(&h, bytes) == cudaSuccess && cudaMalloc(&d, bytes) == cudaSuccess &&
      cudaEventCreate(&a) == cudaSuccess && cudaEventCreate(&b) == cudaSuccess) {
    std::memset(h, 1, bytes);
    float best = 0;
    for (int i = 0; i < 3; ++i) {
      cudaEventRecord(a, stream_);
      cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream_);
      cudaEventRecord(b, stream_);
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      if (ms > 0) best = std::max(best, static_cast<float>(bytes / (ms * 1e-3) / 1e9));
    }
    h2d_gbps_ = best;
  }
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  if (d) cudaFree(d);
  if (h) cudaFreeHost(h);
  cudaGetLastError();  // a failed measurement leaves no sticky error behind
}

void moe_layer::ensure_workspace(int tokens) {
  if (ws_ && ws_->tokens >= tokens) return;
  const int T = std::max(tokens, ws_ ? ws_->tokens * 2 : 16);
  const size_t TK = static_cast<size_t>(T) * std::max(K_, 1);
  const size_t kmax = TK;
  std::vector<std::pair<void**, size_t>> parts;
  auto* ws = new workspace;
  ws->tokens = T;
  const size_t hrows = std::max(kmax * I_, static_cast<size_t>(T) * Is_);
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

// Below this many rows per hit expert the mma.sync kernels win (weights streamed, no host sync).
constexpr long long cublas_min_rows = 128;

bool moe_layer::pick_cublas(long long rows, long long groups, cublas_mode* mode) const {
  // How the cuBLAS GEMMs are issued is decided once the expert sizes are known (run_routed).
  *mode = cublas_mode::automatic;
  {
    const std::string& s = tuning_.tiles;
    if (s == "cublas" || s == "cublas_loop" || s == "cublas_batched" || s == "cublas_auto") {
      *mode = s == "cublas" ? cublas_mode::grouped
              : s == "cublas_loop" ? cublas_mode::loop
              : s == "cublas_batched" ? cublas_mode::batched
                                      : cublas_mode::automatic;
      return true;
    }
    if (s == "m16" || s == "m64" || s == "m128") return false;
  }
  // cublas=off keeps every size on the kernels (and libcublas unloaded); F8 experts always
  // run on the kernels, which dequantize them per tile.
  if (!tuning_.cublas || f8_) return false;
  if (groups <= 0 || rows < cublas_min_rows * groups) return false;
  return cublas_experts::available();
}

cublas_experts& moe_layer::blas() {
  if (!blas_) blas_ = std::make_unique<cublas_experts>(stream_);
  return *blas_;
}

tile_config moe_layer::pick_tiles(int rows_per_group) const {
  // tiles=m16|m64|m128 forces one shape (tests, measurements).
  {
    const std::string& s = tuning_.tiles;
    if (s == "m16") return tile_config::m16;
    if (s == "m64") return tile_config::m64;
    if (s == "m128") return tile_config::m128;
  }
  if (rows_per_group <= 24) return tile_config::m16;
  if (rows_per_group <= 160) return tile_config::m64;
  return tile_config::m128;
}

moe_layer::pass_plan moe_layer::plan(int tokens) const {
  const long long slots = static_cast<long long>(tokens) * K_;
  pass_plan pl{pick_tiles(static_cast<int>((slots + E_ - 1) / E_)), false, cublas_mode::grouped};
  // Rows per expert as the caller routed them are not known on the host; the average over the
  // experts a uniform router would hit (min(E, slots)) stands in for it.
  pl.blas = slots > 0 && pick_cublas(slots, std::min<long long>(E_, slots), &pl.mode);
  return pl;
}

void moe_layer::run_pass(const void* x, bool x_bf16, const void* ids, bool ids_i64, const float* weights, int tokens,
                         float* out) {
  const pass_plan pl = plan(tokens);
  last_tokens_ = tokens;
  if (!pl.blas) {
    last_tiles_ = pl.tiles;
    last_path_ = tile_name(pl.tiles, f8_);
  }
  if (!tuning_.graphs) {
    run_experts(pl, x, x_bf16, ids, ids_i64, weights, tokens, out, stream_);
    return;
  }
  if (pl.blas) {
    last_graph_ = "none: the cuBLAS path reads the expert sizes back to the host";
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
  launch_to_bf16(x, x_bf16, ws_->xb, static_cast<int64_t>(tokens) * H_, stream);
  check(cudaMemsetAsync(out, 0, static_cast<size_t>(tokens) * H_ * 4, stream), "zero output");
  launch_permute(ids, ids_i64, weights, tokens, K, static_cast<int>(E_), bm, ws_->perm, stream);
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
    const cublas_mode mode =
        blas().run_routed(in, w13_, w2_, static_cast<int>(E_), static_cast<int>(H_), static_cast<int>(I_), out, pl.mode);
    last_path_ = cublas_mode_name(mode);
    if (Is_) {
      const float* gate = nullptr;
      if (has_shared_gate_) {
        launch_shared_gate(ws_->xb, sgate_, tokens, static_cast<int>(H_), ws_->gate, stream);
        gate = ws_->gate;
      }
      blas().run_dense(ws_->xb, sw13_, sw2_, tokens, static_cast<int>(H_), static_cast<int>(Is_), gate, out);
    }
    return;
  }
  gemm_problem p;
  p.x = ws_->xb;
  p.w13 = w13_;
  p.w2 = w2_;
  p.w13_f8 = w13_f8_;
  p.w2_f8 = w2_f8_;
  p.w13_scale = w13_scale_;
  p.w2_scale = w2_scale_;
  if (f8_) {
    // A scale block wider than the row is one scale per row: clamp so the index stays 0.
    p.scale_b0 = static_cast<int>(std::min<long long>(scale_b0_, std::max(H_, I_)));
    p.scale_b1 = static_cast<int>(std::min<long long>(scale_b1_, std::max(H_, I_)));
  }
  p.hidden = static_cast<int>(H_);
  p.inter = static_cast<int>(I_);
  p.offsets = ws_->perm.offsets;
  p.sorted_token = ws_->perm.sorted_token;
  p.sorted_weight = ws_->perm.sorted_weight;
  p.tile_expert = ws_->perm.tile_expert;
  p.tile_row0 = ws_->perm.tile_row0;
  p.num_tiles = ws_->perm.num_tiles;
  p.grid_rows = max_row_tiles(slots, static_cast<int>(E_), bm);
  p.h = ws_->h;
  p.out = out;
  launch_experts(p, tc, stream);
  if (Is_) {
    const tile_config sc = pick_tiles(tokens);
    gemm_problem s;
    s.x = ws_->xb;
    s.w13 = sw13_;
    s.w2 = sw2_;
    s.hidden = static_cast<int>(H_);
    s.inter = static_cast<int>(Is_);
    s.dense_rows = tokens;
    s.grid_rows = (tokens + tile_rows(sc) - 1) / tile_rows(sc);
    s.h = ws_->h;
    s.out = out;
    if (has_shared_gate_) {
      launch_shared_gate(ws_->xb, sgate_, tokens, static_cast<int>(H_), ws_->gate, stream);
      s.sorted_weight = ws_->gate;
    }
    launch_experts(s, sc, stream);
  }
}

void moe_layer::forward(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights,
                        const moereg_tensor_view& out) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  if (x.rank != 2) throw invalid_argument("x: rank " + std::to_string(x.rank) + ", expected [T, H]");
  const long long T = x.shape[0];
  if (ids.rank != 2) throw invalid_argument("topk_ids: rank " + std::to_string(ids.rank) + ", expected [T, K]");
  const long long K = ids.shape[1];
  if (K_ == 0) K_ = static_cast<int>(K);  // created without routing
  if (K != K_) throw invalid_argument("topk_ids: K = " + std::to_string(K) + ", expected " + std::to_string(K_));
  expect(x, "x", {T, H_});
  expect(ids, "topk_ids", {T, K});
  expect(weights, "topk_weights", {T, K});
  expect(out, "out", {T, H_});
  if (x.dtype != MOEREG_DTYPE_F32 && x.dtype != MOEREG_DTYPE_BF16)
    throw invalid_argument(std::string("x: dtype ") + dtype_name(x.dtype) + ", expected F32 or BF16");
  if (ids.dtype != MOEREG_DTYPE_I32 && ids.dtype != MOEREG_DTYPE_I64)
    throw invalid_argument(std::string("topk_ids: dtype ") + dtype_name(ids.dtype) + ", expected I32 or I64");
  if (weights.dtype != MOEREG_DTYPE_F32 || out.dtype != MOEREG_DTYPE_F32)
    throw invalid_argument("topk_weights and out must be F32");
  const int mem = x.memory;
  if (ids.memory != mem || weights.memory != mem || out.memory != mem)
    throw invalid_argument("x, topk_ids, topk_weights and out must all be in host or all in device memory");
  if (T == 0) return;
  if (T > (1 << 24)) throw unsupported("x: more than 16M tokens in one call");
  ensure_workspace(static_cast<int>(T));
  const bool xb = x.dtype == MOEREG_DTYPE_BF16, i64 = ids.dtype == MOEREG_DTYPE_I64;
  if (mem == MOEREG_MEMORY_DEVICE) {
    run_pass(x.data, xb, ids.data, i64, static_cast<const float*>(weights.data), static_cast<int>(T),
             static_cast<float*>(out.data));
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
  run_pass(ws_->x_in, xb, ws_->ids_in, i64, ws_->w_in, static_cast<int>(T), ws_->out);
  check(cudaMemcpyAsync(out.data, ws_->out, static_cast<size_t>(T * H_) * 4, cudaMemcpyDeviceToHost, stream_),
        "out download");
  check(cudaStreamSynchronize(stream_), "forward");
}

void moe_layer::route(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  if (!has_router_) throw invalid_argument("route: the layer was created without a router weight");
  if (x.rank != 2) throw invalid_argument("x: rank " + std::to_string(x.rank) + ", expected [T, H]");
  const long long T = x.shape[0];
  expect(x, "x", {T, H_});
  expect(ids, "topk_ids", {T, K_});
  expect(weights, "topk_weights", {T, K_});
  if (x.dtype != MOEREG_DTYPE_F32 && x.dtype != MOEREG_DTYPE_BF16)
    throw invalid_argument(std::string("x: dtype ") + dtype_name(x.dtype) + ", expected F32 or BF16");
  if (ids.dtype != MOEREG_DTYPE_I32 && ids.dtype != MOEREG_DTYPE_I64)
    throw invalid_argument(std::string("topk_ids: dtype ") + dtype_name(ids.dtype) + ", expected I32 or I64");
  if (weights.dtype != MOEREG_DTYPE_F32) throw invalid_argument("topk_weights must be F32");
  if (T == 0) return;
  ensure_workspace(static_cast<int>(T));
  const bool xb = x.dtype == MOEREG_DTYPE_BF16, i64 = ids.dtype == MOEREG_DTYPE_I64;
  const void* xd = x.data;
  if (x.memory == MOEREG_MEMORY_HOST) {
    check(cudaMemcpyAsync(ws_->x_in, x.data, static_cast<size_t>(T * H_) * elem_size(x.dtype), cudaMemcpyHostToDevice,
                          stream_),
          "x upload");
    xd = ws_->x_in;
  }
  launch_router_logits(xd, xb, router_, static_cast<int>(T), static_cast<int>(H_), static_cast<int>(E_), ws_->logits,
                       stream_);
  void* idd = ids.memory == MOEREG_MEMORY_DEVICE ? ids.data : ws_->ids_in;
  float* wd = weights.memory == MOEREG_MEMORY_DEVICE ? static_cast<float*>(weights.data) : ws_->w_in;
  // "Rounded to the activation dtype": a no-op for f32 activations, bf16 rounding for bf16 ones.
  route_config cfg = rcfg_;
  cfg.round_logits = rcfg_.round_logits && xb;
  launch_router_topk(ws_->logits, bias_, cfg, static_cast<int>(T), idd, i64, wd, stream_);
  if (ids.memory == MOEREG_MEMORY_HOST)
    check(cudaMemcpyAsync(ids.data, idd, static_cast<size_t>(T * K_) * elem_size(ids.dtype), cudaMemcpyDeviceToHost,
                          stream_),
          "ids download");
  if (weights.memory == MOEREG_MEMORY_HOST)
    check(cudaMemcpyAsync(weights.data, wd, static_cast<size_t>(T * K_) * 4, cudaMemcpyDeviceToHost, stream_),
          "weights download");
  if (ids.memory == MOEREG_MEMORY_HOST || weights.memory == MOEREG_MEMORY_HOST || x.memory == MOEREG_MEMORY_HOST)
    check(cudaStreamSynchronize(stream_), "route");
  else
    check(cudaGetLastError(), "route");
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

long long moe_layer::f8_scale_bytes() const {
  auto cdiv = [](long long a, long long b) { return (a + b - 1) / b; };
  return 4 * E_ * (2 * cdiv(I_, scale_b0_) * cdiv(H_, scale_b1_) + cdiv(H_, scale_b0_) * cdiv(I_, scale_b1_));
}

std::string moe_layer::describe() const {
  std::ostringstream o;
  o.precision(4);
  o << "{\"backend\":\"cuda\",\"device\":\"" << device_name_ << "\",\"compute_capability\":\"" << sm_major_ << "."
    << sm_minor_ << "\",\"isa\":\"sm_90a\",\"experts\":" << E_ << ",\"hidden\":" << H_ << ",\"intermediate\":" << I_
    << ",\"shared_intermediate\":" << Is_ << ",\"top_k\":" << K_ << ",\"weights_dtype\":\"" << (f8_ ? "F8_E4M3" : "BF16") << "\""
    << (f8_ ? ",\"scale_block\":[" + std::to_string(scale_b0_) + "," + std::to_string(scale_b1_) + "]" : std::string())
    << (f8_ ? ",\"weight_bytes\":" + std::to_string(E_ * 3 * I_ * H_) + ",\"scale_bytes\":" + std::to_string(f8_scale_bytes())
            : std::string())
    << ",\"weights\":\"" << (borrowed_ ? "borrowed: read in the caller's device memory, no copy" : "copied from host memory")
    << "\",\"bytes_on_device\":" << weight_bytes_ << ",\"load_seconds\":" << load_seconds_
    << ",\"load_gbps\":" << load_gbps_ << ",\"h2d_gbps\":" << h2d_gbps_
    << ",\"router\":\"" << (has_router_ ? "device" : "none") << "\""
    << ",\"gemm\":\"mma.sync m16n8k16 bf16, fp32 accumulate, fused SiLU-gate epilogue, float2-atomic un-permute"
    << (f8_ ? "; F8_E4M3 weights read as stored and dequantized per tile in shared memory to bf16 (q x scale, "
              "rounded once)"
            : "")
    << "\""
    << ",\"gemm_large\":\""
    << (f8_ ? std::string("the kernels (F8_E4M3 experts do not go to cuBLAS)")
        : !tuning_.cublas ? std::string("off (backend option cublas=off)")
        : cublas_experts::available()
            ? "cuBLAS " + cublas_experts::version() + " for >= " + std::to_string(cublas_min_rows) +
                  " rows per hit expert (batched, per-expert or grouped, by expert sizes)"
            : std::string("none: libcublas.so.13 not loadable; the kernels run every size"))
    << "\""
    << ",\"tiles\":{\"m16\":\"" << tile_name(tile_config::m16, f8_) << "\",\"m64\":\"" << tile_name(tile_config::m64, f8_)
    << "\",\"m128\":\"" << tile_name(tile_config::m128, f8_) << "\"}"
    << ",\"options\":{\"tiles\":\"" << tuning_.tiles << "\",\"cublas\":\"" << (tuning_.cublas ? "auto" : "off")
    << "\",\"graphs\":\"" << (tuning_.graphs ? "on" : "off") << "\"}"
    << ",\"last_graph\":\"" << last_graph_ << "\",\"graphs_cached\":" << graphs_.size()
    << ",\"last_tokens\":" << last_tokens_ << ",\"last_tiles\":\"" << (last_path_.empty() ? tile_name(last_tiles_, f8_) : last_path_.c_str()) << "\"}";
  return o.str();
}

}  // namespace moereg::cuda
