// SPDX-License-Identifier: Apache-2.0
// cublas_experts.cu - cuBLAS GEMMs for many rows per expert (see cublas_experts.h).
#include "cublas_experts.h"

#include <cublas_v2.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include "cuda_moe.h"
#include "dl_library.h"

namespace moereg::cuda {

namespace {

// The cuBLAS entry points used, resolved once from libcublas.so.13.
struct cublas_api {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasGetVersion_v2) get_version = nullptr;
  // Spelled out: the C++ header overloads these names.
  cublasStatus_t (*gemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*, const void*,
                         cudaDataType_t, int, const void*, cudaDataType_t, int, const void*, void*, cudaDataType_t, int,
                         cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  cublasStatus_t (*grouped)(cublasHandle_t, const cublasOperation_t[], const cublasOperation_t[], const int[],
                            const int[], const int[], const void*, const void* const[], cudaDataType_t, const int[],
                            const void* const[], cudaDataType_t, const int[], const void*, void* const[],
                            cudaDataType_t, const int[], int, const int[], cublasComputeType_t) = nullptr;
  cublasStatus_t (*batched)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void* const[], cudaDataType_t, int, const void* const[], cudaDataType_t, int,
                            const void*, void* const[], cudaDataType_t, int, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
  cublasStatus_t (*strided)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType_t, int, long long, const void*, cudaDataType_t, int, long long,
                            const void*, void*, cudaDataType_t, int, long long, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
  std::string error;
  int version = 0;
};

const cublas_api& api() {
  static cublas_api a;
  static std::once_flag once;
  std::call_once(once, [] {
    dl_library lib("libcublas.so.13");
    lib.resolve(a.create, "cublasCreate_v2");
    lib.resolve(a.destroy, "cublasDestroy_v2");
    lib.resolve(a.set_stream, "cublasSetStream_v2");
    lib.resolve(a.get_version, "cublasGetVersion_v2");
    lib.resolve(a.gemm, "cublasGemmEx");
    lib.resolve(a.grouped, "cublasGemmGroupedBatchedEx");
    lib.resolve(a.batched, "cublasGemmBatchedEx");
    lib.resolve(a.strided, "cublasGemmStridedBatchedEx");
    a.error = lib.error();
    if (a.error.empty()) {
      cublasHandle_t h = nullptr;
      if (a.create(&h) == CUBLAS_STATUS_SUCCESS) {
        a.get_version(h, &a.version);
        a.destroy(h);
      }
    }
  });
  return a;
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(s));
}

__global__ void gather_rows(const __nv_bfloat16* __restrict__ x, const int* __restrict__ sorted_token, int rows,
                            int hidden, padding pad, __nv_bfloat16* __restrict__ xs) {
  const int r = blockIdx.x;
  if (r >= rows) return;
  const uint4* src = reinterpret_cast<const uint4*>(x + static_cast<size_t>(sorted_token[r]) * hidden);
  uint4* dst = reinterpret_cast<uint4*>(xs + static_cast<size_t>(work_row(r, pad)) * hidden);
  for (int c = threadIdx.x; c < hidden / 8; c += blockDim.x) dst[c] = src[c];
}

// h[r, c] = silu(g[r, c]) * g[r, I + c], two columns per thread.
__global__ void silu_gate(const __nv_bfloat16* __restrict__ g, int rows, int inter, __nv_bfloat16* __restrict__ h) {
  const int c = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= inter) return;
  for (int r = blockIdx.y; r < rows; r += gridDim.y) {  // grid.y is capped at 65535
    const __nv_bfloat16* gr = g + static_cast<size_t>(r) * 2 * inter;
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gr + c));
    const float2 u = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gr + inter + c));
    const float s0 = a.x / (1.f + __expf(-a.x)) * u.x, s1 = a.y / (1.f + __expf(-a.y)) * u.y;
    *reinterpret_cast<__nv_bfloat162*>(h + static_cast<size_t>(r) * inter + c) = __floats2bfloat162_rn(s0, s1);
  }
}

// out[token(r)] += w(r) * y[r]; token = sorted_token[r] (or r), w = weight[r] (or 1).
__global__ void unpermute_add(const __nv_bfloat16* __restrict__ y, const int* __restrict__ sorted_token,
                              const float* __restrict__ weight, int rows, int hidden, float* __restrict__ out) {
  const int c = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= hidden) return;
  for (int r = blockIdx.y; r < rows; r += gridDim.y) {
    const int t = sorted_token ? sorted_token[r] : r;
    const float w = weight ? weight[r] : 1.f;
    const float2 v =
        __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(y + static_cast<size_t>(r) * hidden + c));
    atomicAdd(reinterpret_cast<float2*>(out + static_cast<size_t>(t) * hidden + c), make_float2(w * v.x, w * v.y));
  }
}

void launch_silu(const __nv_bfloat16* g, int rows, int inter, __nv_bfloat16* h, cudaStream_t s) {
  dim3 grid((inter / 2 + 127) / 128, std::min(rows, 65535));
  silu_gate<<<grid, 128, 0, s>>>(g, rows, inter, h);
}

void launch_unpermute(const __nv_bfloat16* y, const int* tok, const float* w, int rows, int hidden, float* out,
                      cudaStream_t s) {
  dim3 grid((hidden / 2 + 255) / 256, std::min(rows, 65535));
  unpermute_add<<<grid, 256, 0, s>>>(y, tok, w, rows, hidden, out);
}

// Padding costs max_rows * groups rows of GEMM work for `rows` useful ones; up to this much
// extra the single batched launch beats one launch per expert (measured on an H200 with random
// routing: docs/bench-cuda.md).
constexpr double max_padding_ratio = 1.5;
// Per-expert GEMMs at least this large (2I x H elements of gate/up) keep a launch per expert busy
// long enough that the launches do not dominate (mixtral, deepseek; not qwen3-30B's 1536 x 2048).
constexpr long long loop_min_weight_elems = 16ll << 20;

cublas_mode choose_mode(long long rows, long long groups, long long max_rows, int hidden, int inter) {
  if (static_cast<double>(max_rows * groups) <= max_padding_ratio * static_cast<double>(rows))
    return cublas_mode::batched;
  if (2ll * inter * hidden >= loop_min_weight_elems) return cublas_mode::loop;
  return cublas_mode::grouped;
}

}  // namespace

const char* cublas_mode_name(cublas_mode m) {
  switch (m) {
    case cublas_mode::grouped: return "cublas";
    case cublas_mode::loop: return "cublas_loop";
    case cublas_mode::batched: return "cublas_batched";
    default: return "cublas_auto";
  }
}

bool cublas_experts::available(std::string* why) {
  const cublas_api& a = api();
  if (why) *why = a.error;
  return a.error.empty();
}

std::string cublas_experts::version() {
  return available() ? std::to_string(api().version) : "";
}

cublas_experts::cublas_experts(cudaStream_t stream) : stream_(stream) {
  std::string why;
  if (!available(&why)) throw unsupported("cuBLAS path: " + why);
  cublasHandle_t h = nullptr;
  check_blas(api().create(&h), "cublasCreate");
  handle_ = h;
  check_blas(api().set_stream(h, stream_), "cublasSetStream");
}

cublas_experts::~cublas_experts() {
  if (handle_) api().destroy(static_cast<cublasHandle_t>(handle_));
  cudaFree(a_);
  cudaFree(g_);
  cudaFree(h_);
  cudaFree(dev_ptrs_);
  cudaFreeHost(host_ptrs_);
  cudaFreeHost(host_offsets_);
}

void cublas_experts::ensure(size_t rows, int hidden, int inter) {
  const size_t a = rows * hidden, g = rows * 2 * inter;
  if (a <= a_elems_ && g <= g_elems_) return;
  check(cudaStreamSynchronize(stream_), "cuBLAS path: workspace");
  if (a > a_elems_) {
    cudaFree(a_);
    a_ = nullptr;
    a_elems_ = 0;
    check(cudaMalloc(&a_, a * 2), "cuBLAS path: allocate rows");
    a_elems_ = a;
  }
  if (g > g_elems_) {
    cudaFree(g_);
    cudaFree(h_);
    g_ = h_ = nullptr;
    g_elems_ = 0;
    check(cudaMalloc(&g_, g * 2), "cuBLAS path: allocate gate/up");
    check(cudaMalloc(&h_, g), "cuBLAS path: allocate h");
    g_elems_ = g;
  }
}

void cublas_experts::ensure_pointers(int n) {
  if (n <= ptr_capacity_) return;
  check(cudaStreamSynchronize(stream_), "cuBLAS path: pointer arrays");
  cudaFree(dev_ptrs_);
  cudaFreeHost(host_ptrs_);
  dev_ptrs_ = nullptr;
  host_ptrs_ = nullptr;
  ptr_capacity_ = 0;
  // Six pointer arrays, then room for n ints (the padded layout's first rows).
  check(cudaMallocHost(&host_ptrs_, sizeof(void*) * 7 * n), "cuBLAS path: pointer arrays");
  check(cudaMalloc(&dev_ptrs_, sizeof(void*) * 7 * n), "cuBLAS path: pointer arrays");
  ptr_capacity_ = n;
}

void cublas_experts::gemms_batched(const std::vector<group>& groups, int max_rows, int experts,
                                   const __nv_bfloat16* w13, const __nv_bfloat16* w2, int hidden, int inter) {
  const auto& A = api();
  auto h = static_cast<cublasHandle_t>(handle_);
  const float one = 1.f, zero = 0.f;
  const int n = static_cast<int>(groups.size());
  const long long e13 = 2ll * inter * hidden, e2 = static_cast<long long>(hidden) * inter;
  const long long sx = static_cast<long long>(max_rows) * hidden, sg = 2ll * max_rows * inter,
                  sh = static_cast<long long>(max_rows) * inter;
  // Column-major view as in gemms(): C^T[m, max_rows] = W[m, k] X^T, per expert. Rows past an
  // expert's own count hold stale data; their results are computed and never read.
  if (n == experts) {  // every expert hit: the weights are evenly strided too
    check_blas(A.strided(h, CUBLAS_OP_T, CUBLAS_OP_N, 2 * inter, max_rows, hidden, &one, w13, CUDA_R_16BF, hidden,
                         e13, a_, CUDA_R_16BF, hidden, sx, &zero, g_, CUDA_R_16BF, 2 * inter, sg, n,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx (gate/up)");
    launch_silu(g_, n * max_rows, inter, h_, stream_);
    check_blas(A.strided(h, CUBLAS_OP_T, CUBLAS_OP_N, hidden, max_rows, inter, &one, w2, CUDA_R_16BF, inter, e2, h_,
                         CUDA_R_16BF, inter, sh, &zero, a_, CUDA_R_16BF, hidden, sx, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx (down)");
    return;
  }
  void** p = host_ptrs_;
  for (int i = 0; i < n; ++i) {
    p[0 * n + i] = const_cast<__nv_bfloat16*>(w13 + groups[i].expert * e13);
    p[1 * n + i] = a_ + i * sx;
    p[2 * n + i] = g_ + i * sg;
    p[3 * n + i] = const_cast<__nv_bfloat16*>(w2 + groups[i].expert * e2);
    p[4 * n + i] = h_ + i * sh;
    p[5 * n + i] = a_ + i * sx;
  }
  check(cudaMemcpyAsync(dev_ptrs_, host_ptrs_, sizeof(void*) * 6 * n, cudaMemcpyHostToDevice, stream_),
        "cuBLAS path: pointer upload");
  void** d = dev_ptrs_;
  check_blas(A.batched(h, CUBLAS_OP_T, CUBLAS_OP_N, 2 * inter, max_rows, hidden, &one, d, CUDA_R_16BF, hidden, d + n,
                       CUDA_R_16BF, hidden, &zero, d + 2 * n, CUDA_R_16BF, 2 * inter, n, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
             "cublasGemmBatchedEx (gate/up)");
  launch_silu(g_, n * max_rows, inter, h_, stream_);
  check_blas(A.batched(h, CUBLAS_OP_T, CUBLAS_OP_N, hidden, max_rows, inter, &one, d + 3 * n, CUDA_R_16BF, inter,
                       d + 4 * n, CUDA_R_16BF, inter, &zero, d + 5 * n, CUDA_R_16BF, hidden, n, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
             "cublasGemmBatchedEx (down)");
}

void cublas_experts::gemms(const std::vector<group>& groups, const __nv_bfloat16* xs, const __nv_bfloat16* w13,
                           const __nv_bfloat16* w2, int hidden, int inter, cublas_mode mode) {
  const auto& A = api();
  auto h = static_cast<cublasHandle_t>(handle_);
  const float one = 1.f, zero = 0.f;
  const size_t e13 = static_cast<size_t>(2) * inter * hidden, e2 = static_cast<size_t>(hidden) * inter;
  const int n = static_cast<int>(groups.size());
  if (n == 0) return;
  if (mode == cublas_mode::loop) {
    // Row-major C[n, m] = X[n, k] W[m, k]^T is column-major C^T = op_T(W) X^T.
    for (const group& g : groups)
      check_blas(A.gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 2 * inter, g.n, hidden, &one, w13 + g.expert * e13, CUDA_R_16BF,
                        hidden, xs + static_cast<size_t>(g.row0) * hidden, CUDA_R_16BF, hidden, &zero,
                        g_ + static_cast<size_t>(g.row0) * 2 * inter, CUDA_R_16BF, 2 * inter, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (gate/up)");
    const int rows = groups.back().row0 + groups.back().n;
    launch_silu(g_, rows, inter, h_, stream_);
    for (const group& g : groups)
      check_blas(A.gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, hidden, g.n, inter, &one, w2 + g.expert * e2, CUDA_R_16BF, inter,
                        h_ + static_cast<size_t>(g.row0) * inter, CUDA_R_16BF, inter, &zero,
                        a_ + static_cast<size_t>(g.row0) * hidden, CUDA_R_16BF, hidden, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (down)");
    return;
  }
  ensure_pointers(n);
  // Host-side arrays of the grouped call: every group is one problem of its own size.
  std::vector<cublasOperation_t> ta(n, CUBLAS_OP_T), tb(n, CUBLAS_OP_N);
  std::vector<int> m1(n, 2 * inter), m2(n, hidden), ns(n), k1(n, hidden), k2(n, inter), ld1c(n, 2 * inter),
      ldh(n, inter), ldy(n, hidden), size(n, 1);
  std::vector<float> alpha(n, 1.f), beta(n, 0.f);
  void** p = host_ptrs_;
  for (int i = 0; i < n; ++i) {
    const group& g = groups[i];
    ns[i] = g.n;
    p[0 * n + i] = const_cast<__nv_bfloat16*>(w13 + g.expert * e13);
    p[1 * n + i] = const_cast<__nv_bfloat16*>(xs + static_cast<size_t>(g.row0) * hidden);
    p[2 * n + i] = g_ + static_cast<size_t>(g.row0) * 2 * inter;
    p[3 * n + i] = const_cast<__nv_bfloat16*>(w2 + g.expert * e2);
    p[4 * n + i] = h_ + static_cast<size_t>(g.row0) * inter;
    p[5 * n + i] = a_ + static_cast<size_t>(g.row0) * hidden;
  }
  check(cudaMemcpyAsync(dev_ptrs_, host_ptrs_, sizeof(void*) * 6 * n, cudaMemcpyHostToDevice, stream_),
        "cuBLAS path: pointer upload");
  void** d = dev_ptrs_;
  check_blas(A.grouped(h, ta.data(), tb.data(), m1.data(), ns.data(), k1.data(), alpha.data(), d, CUDA_R_16BF,
                       k1.data(), d + n, CUDA_R_16BF, k1.data(), beta.data(), d + 2 * n, CUDA_R_16BF, ld1c.data(), n,
                       size.data(), CUBLAS_COMPUTE_32F),
             "cublasGemmGroupedBatchedEx (gate/up)");
  const int rows = groups.back().row0 + groups.back().n;
  launch_silu(g_, rows, inter, h_, stream_);
  check_blas(A.grouped(h, ta.data(), tb.data(), m2.data(), ns.data(), k2.data(), alpha.data(), d + 3 * n,
                       CUDA_R_16BF, ldh.data(), d + 4 * n, CUDA_R_16BF, ldh.data(), beta.data(), d + 5 * n,
                       CUDA_R_16BF, ldy.data(), n, size.data(), CUBLAS_COMPUTE_32F),
             "cublasGemmGroupedBatchedEx (down)");
}

cublas_mode cublas_experts::run_routed(const routed_rows& in, const __nv_bfloat16* w13, const __nv_bfloat16* w2,
                                       int experts, int hidden, int inter, float* out, cublas_mode mode) {
  if (in.top_k > max_combine_top_k) throw unsupported("cuBLAS path: top_k " + std::to_string(in.top_k) + " > 32");
  const int* offsets = in.offsets;
  if (experts + 1 > offsets_capacity_) {
    cudaFreeHost(host_offsets_);
    host_offsets_ = nullptr;
    offsets_capacity_ = 0;
    check(cudaMallocHost(&host_offsets_, sizeof(int) * (experts + 1)), "cuBLAS path: offsets");
    offsets_capacity_ = experts + 1;
  }
  check(cudaMemcpyAsync(host_offsets_, offsets, sizeof(int) * (experts + 1), cudaMemcpyDeviceToHost, stream_),
        "cuBLAS path: offsets download");
  check(cudaStreamSynchronize(stream_), "cuBLAS path: offsets download");
  std::vector<group> groups;
  int max_rows = 0;
  for (int e = 0; e < experts; ++e) {
    const int n = host_offsets_[e + 1] - host_offsets_[e];
    if (n > 0) groups.push_back({n, host_offsets_[e], e});
    max_rows = std::max(max_rows, n);
  }
  const int rows = host_offsets_[experts];
  if (mode == cublas_mode::automatic) mode = choose_mode(rows, static_cast<long long>(groups.size()), max_rows, hidden, inter);
  auto combine = [&](const padding& pad) { launch_combine_rows(a_, in, pad, hidden, out, stream_); };
  if (rows == 0) return mode;
  if (mode != cublas_mode::batched) {
    ensure(static_cast<size_t>(rows), hidden, inter);
    gather_rows<<<rows, 128, 0, stream_>>>(in.xb, in.sorted_token, rows, hidden, padding{}, a_);
    gemms(groups, a_, w13, w2, hidden, inter, mode);
    combine(padding{});
    return mode;
  }
  const int n = static_cast<int>(groups.size());
  ensure(static_cast<size_t>(n) * max_rows, hidden, inter);
  ensure_pointers(n);
  // The hit experts' first rows go up behind the six pointer arrays (the batched call after
  // uploads only the pointer part, so the two never overlap).
  int* row0_host = reinterpret_cast<int*>(host_ptrs_ + 6 * n);
  for (int i = 0; i < n; ++i) row0_host[i] = groups[i].row0;
  int* row0_dev = reinterpret_cast<int*>(dev_ptrs_ + 6 * n);
  check(cudaMemcpyAsync(row0_dev, row0_host, sizeof(int) * n, cudaMemcpyHostToDevice, stream_),
        "cuBLAS path: expert rows upload");
  const padding pad{row0_dev, n, max_rows};
  gather_rows<<<rows, 128, 0, stream_>>>(in.xb, in.sorted_token, rows, hidden, pad, a_);
  gemms_batched(groups, max_rows, experts, w13, w2, hidden, inter);
  combine(pad);
  return mode;
}

void cublas_experts::run_dense(const __nv_bfloat16* xb, const __nv_bfloat16* w13, const __nv_bfloat16* w2,
                               int tokens, int hidden, int inter, const float* row_weight, float* out) {
  ensure(static_cast<size_t>(tokens), hidden, inter);
  const auto& A = api();
  auto h = static_cast<cublasHandle_t>(handle_);
  const float one = 1.f, zero = 0.f;
  check_blas(A.gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 2 * inter, tokens, hidden, &one, w13, CUDA_R_16BF, hidden, xb,
                    CUDA_R_16BF, hidden, &zero, g_, CUDA_R_16BF, 2 * inter, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx (shared gate/up)");
  launch_silu(g_, tokens, inter, h_, stream_);
  check_blas(A.gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, hidden, tokens, inter, &one, w2, CUDA_R_16BF, inter, h_,
                    CUDA_R_16BF, inter, &zero, a_, CUDA_R_16BF, hidden, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx (shared down)");
  launch_unpermute(a_, nullptr, row_weight, tokens, hidden, out, stream_);
}

}  // namespace moereg::cuda
