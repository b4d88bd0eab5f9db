// SPDX-License-Identifier: Apache-2.0
// cuda_moe_load.cu - getting a layer's weights onto the device at create: the F8 checks,
// copies from host memory through pinned staging buffers (converted to bf16, byte for byte,
// or e4m3 in fragment order), borrowing weights already in device memory, and the pinned
// host-to-device bandwidth describe reports beside the load rate.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <tuple>
#include <vector>

#include "cuda_moe.h"
#include "host_views.h"

namespace moereg::cuda {

using namespace host;

namespace {
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

namespace {

// One F8_E4M3 stack of experts as the ABI gives it: the routed experts ([E, ...], names
// "w13"...) or the shared expert ([...], names "shared_w13"...).
struct f8_stack {
  const moereg_tensor_view &w13, &w2, &s13, &s2;
  std::string prefix;  // "" or "shared_"
  std::string whose;   // "F8_E4M3 experts need" / "an F8_E4M3 shared expert needs"
  long long experts;   // 0: one matrix each, no leading axis
  long long inter;     // I or Is
};

// What the F8 kernels need of either stack: both matrices F8 in host memory, F32 scales on
// scale_block's grid, sizes in whole 16-byte chunks, scale columns of whole 8-byte groups.
void check_f8_stack(const f8_stack& k, long long hidden, long long b0, long long b1) {
  const std::string w13 = "weights." + k.prefix + "w13", w2 = "weights." + k.prefix + "w2";
  if (k.w13.dtype != MOEREG_DTYPE_F8_E4M3 || k.w2.dtype != MOEREG_DTYPE_F8_E4M3)
    throw unsupported("weights: " + k.prefix + "w13 " + dtype_name(k.w13.dtype) + ", " + k.prefix + "w2 " +
                      dtype_name(k.w2.dtype) + "; " + k.whose + " both in F8_E4M3");
  if (k.w13.memory == MOEREG_MEMORY_DEVICE)
    throw unsupported(w13 + ": F8_E4M3 weights in device memory; the CUDA backend reads device-resident BF16 "
                      "weights only (F8_E4M3 from host memory)");
  if (!k.s13.data || !k.s2.data || b0 <= 0 || b1 <= 0)
    throw invalid_argument("weights: " + k.whose + " " + k.prefix + "w13_scale, " + k.prefix +
                           "w2_scale and a positive scale_block, found scale_block {" + std::to_string(b0) + ", " +
                           std::to_string(b1) + "}");
  if (hidden % 16 || k.inter % 16)
    throw unsupported("weights: hidden " + std::to_string(hidden) + ", " + (k.prefix.empty() ? "" : "shared ") +
                      "intermediate " + std::to_string(k.inter) + "; the CUDA F8_E4M3 kernels need multiples of 16");
  if (b1 % 8 && b1 < std::max(hidden, k.inter))
    throw unsupported("weights: scale_block {" + std::to_string(b0) + ", " + std::to_string(b1) +
                      "}; the CUDA F8_E4M3 kernels need scale columns that are a multiple of 8 or cover a whole row");
  for (const auto& [v, name] : {std::pair{&k.s13, w13 + "_scale"}, std::pair{&k.s2, w2 + "_scale"}})
    if (v->dtype != MOEREG_DTYPE_F32) throw unsupported(name + ": dtype " + dtype_name(v->dtype) + ", expected F32");
  const long long g13 = 2 * cdiv(k.inter, b0), c13 = cdiv(hidden, b1), g2 = cdiv(hidden, b0), c2 = cdiv(k.inter, b1);
  if (k.experts) {
    expect(k.s13, (w13 + "_scale").c_str(), {k.experts, g13, c13});
    expect(k.s2, (w2 + "_scale").c_str(), {k.experts, g2, c2});
  } else {
    expect(k.s13, (w13 + "_scale").c_str(), {g13, c13});
    expect(k.s2, (w2 + "_scale").c_str(), {g2, c2});
  }
}

}  // namespace

void moe_layer::check_f8(const moereg_moe_weights& w) {
  scale_b0_ = w.scale_block[0];
  scale_b1_ = w.scale_block[1];
  check_f8_stack({w.w13, w.w2, w.w13_scale, w.w2_scale, "", "F8_E4M3 experts need", E_, I_}, H_, scale_b0_, scale_b1_);
  if (tuning_.tiles.rfind("cublas", 0) == 0)
    throw unsupported("backend option tiles=" + tuning_.tiles +
                      ": the cuBLAS path runs BF16 experts; F8_E4M3 experts run on the kernels (tiles=auto|m16|m64|m128) "
                      "or on FP8 tensor cores (f8_activations=e4m3)");
  if (tuning_.f8_activations == "e4m3") {
    std::string why;
    if (!tuning_.cublas)
      throw unsupported("backend option f8_activations=e4m3 runs on FP8 tensor cores, which cublas=off turns off (every "
                        "size on the mma.sync kernels)");
    if (!f8_tensor_cores(&why)) throw unsupported("backend option f8_activations=e4m3: " + why);
  }
}

void moe_layer::check_shared_f8(const moereg_moe_weights& w) {
  check_f8_stack({w.shared_w13, w.shared_w2, w.shared_w13_scale, w.shared_w2_scale, "shared_",
                  "an F8_E4M3 shared expert needs", 0, Is_},
                 H_, w.scale_block[0], w.scale_block[1]);
  if (!f8_) {  // routed experts without scales: the grid is the shared expert's alone
    scale_b0_ = w.scale_block[0];
    scale_b1_ = w.scale_block[1];
  }
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
  // An F8 shared expert keeps a bf16 copy only for passes on cuBLAS (its dense GEMMs), not
  // where it joins the grouped FP8 GEMM instead.
  const bool shared_bf16 =
      Is_ && (!shared_f8_ || (tuning_.cublas && cublas_experts::available() && !shared_in_grouped()));
  if (shared_bf16) {
    sw13_ = static_cast<__nv_bfloat16*>(dalloc(static_cast<size_t>(2 * Is_ * H_) * 2));
    sw2_ = static_cast<__nv_bfloat16*>(dalloc(static_cast<size_t>(H_ * Is_) * 2));
  }
  if (shared_f8_) {
    sw13_f8_ = static_cast<uint8_t*>(dalloc(static_cast<size_t>(2 * Is_ * H_)));
    sw2_f8_ = static_cast<uint8_t*>(dalloc(static_cast<size_t>(H_ * Is_)));
    sw13_scale_ = static_cast<float*>(dalloc(static_cast<size_t>(numel(w.shared_w13_scale)) * 4));
    sw2_scale_ = static_cast<float*>(dalloc(static_cast<size_t>(numel(w.shared_w2_scale)) * 4));
  }
  if (Is_ && has_shared_gate_) sgate_ = static_cast<__nv_bfloat16*>(dalloc(static_cast<size_t>(H_) * 2));
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
    if (shared_f8_) {
      upload(sw13_f8_, w.shared_w13, "weights.shared_w13", st, staged::f8_fragments);
      upload(sw2_f8_, w.shared_w2, "weights.shared_w2", st, staged::f8_fragments);
      upload(sw13_scale_, w.shared_w13_scale, "weights.shared_w13_scale", st, staged::bytes);
      upload(sw2_scale_, w.shared_w2_scale, "weights.shared_w2_scale", st, staged::bytes);
    }
    if (shared_bf16 && shared_f8_) {
      const int threads = static_cast<int>(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
      for (const auto& [dst, v, sv, rows, what] :
           {std::tuple{static_cast<void*>(sw13_), &w.shared_w13, &w.shared_w13_scale, Is_, "weights.shared_w13 (bf16 copy)"},
            std::tuple{static_cast<void*>(sw2_), &w.shared_w2, &w.shared_w2_scale, H_, "weights.shared_w2 (bf16 copy)"}}) {
        const std::vector<uint16_t> b = dequantize_f8(*v, *sv, rows, scale_b0_, scale_b1_, threads);
        moereg_tensor_view bv = *v;
        bv.data = const_cast<uint16_t*>(b.data());
        bv.dtype = MOEREG_DTYPE_BF16;
        upload(dst, bv, what, st);
        for (auto& stream : st.streams) check(cudaStreamSynchronize(stream), "weights copy");  // before b is freed
      }
    } else if (shared_bf16) {
      upload(sw13_, w.shared_w13, "weights.shared_w13", st);
      upload(sw2_, w.shared_w2, "weights.shared_w2", st);
    }
    if (Is_ && has_shared_gate_) upload(sgate_, w.shared_gate, "weights.shared_gate", st);
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

}  // namespace moereg::cuda
