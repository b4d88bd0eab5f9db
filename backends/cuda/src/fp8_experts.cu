// SPDX-License-Identifier: Apache-2.0
// fp8_experts.cu - F8_E4M3 experts on FP8 tensor cores through cuBLASLt (see fp8_experts.h).
#include "fp8_experts.h"

#include <cublasLt.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

#include "cuda_moe.h"
#include "dl_library.h"
#include "moe_kernels.cuh"
#include "f8_quantize.cuh"

namespace moereg::cuda {

namespace {

constexpr int group = f8_group;

// The cuBLASLt entry points used, resolved once from libcublasLt.so.13.
struct lt_api {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtDestroy) destroy = nullptr;
  decltype(&cublasLtGetVersion) get_version = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&cublasLtMatrixLayoutSetAttribute) layout_set = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  std::string error;
  size_t version = 0;
};

const lt_api& api() {
  static lt_api a;
  static std::once_flag once;
  std::call_once(once, [] {
    dl_library lib("libcublasLt.so.13");
    lib.resolve(a.create, "cublasLtCreate");
    lib.resolve(a.destroy, "cublasLtDestroy");
    lib.resolve(a.get_version, "cublasLtGetVersion");
    lib.resolve(a.matmul, "cublasLtMatmul");
    lib.resolve(a.desc_create, "cublasLtMatmulDescCreate");
    lib.resolve(a.desc_destroy, "cublasLtMatmulDescDestroy");
    lib.resolve(a.desc_set, "cublasLtMatmulDescSetAttribute");
    lib.resolve(a.layout_create, "cublasLtMatrixLayoutCreate");
    lib.resolve(a.layout_destroy, "cublasLtMatrixLayoutDestroy");
    lib.resolve(a.layout_set, "cublasLtMatrixLayoutSetAttribute");
    lib.resolve(a.pref_create, "cublasLtMatmulPreferenceCreate");
    lib.resolve(a.pref_destroy, "cublasLtMatmulPreferenceDestroy");
    lib.resolve(a.pref_set, "cublasLtMatmulPreferenceSetAttribute");
    lib.resolve(a.heuristic, "cublasLtMatmulAlgoGetHeuristic");
    a.error = lib.error();
    if (a.error.empty()) {
      a.version = a.get_version();
      // Block-scaled FP8 (VEC128 / BLK128x128) arrived in cuBLASLt 12.9.
      if (a.version < 120900) a.error = "libcublasLt " + std::to_string(a.version) + " predates block-scaled FP8 (12.9)";
    }
  });
  return a;
}

void check_lt(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLASLt status " + std::to_string(static_cast<int>(s)));
}

// Expert e's rows [o, o + n) keep their scales at o * groups + g * n + (r - o), each
// expert's block [groups, n] with n contiguous, as cuBLASLt's VEC128 scales of its matmul's B
// operand lie (quantize_group, f8_quantize.cuh, writes one).

// Sorted row r of hit expert e (rows [o, o + n) of the sorted order) lives at padded row
// pad[e] + r - o of the work buffers. Each expert's block is its rows rounded up to 16 (the
// block-scaled matmul refuses other row counts), so every operand, output column block and
// scale block is aligned; the matmul runs over the whole block and the rows past n (stale
// data) are never read back.
constexpr int row_block = 16;
struct row_place {
  int q, o, m, p;  // padded row, expert's first sorted row, its block's rows, its first padded row
};
__device__ __forceinline__ row_place place(const int* offsets, const int* pad, int experts, int r) {
  const int e = group_of_row(offsets, experts, r), o = offsets[e];
  return {pad[e] + r - o, o, pad[e + 1] - pad[e], pad[e]};
}

// xq[row] = e4m3 of x[sorted_token[r]] per 128 columns. One block of 4 warps per sorted row.
__global__ void quantize_x_rows(const __nv_bfloat16* __restrict__ x, const int* __restrict__ sorted_token,
                                const int* __restrict__ offsets, const int* __restrict__ pad, int experts, int hidden,
                                uint8_t* __restrict__ xq, float* __restrict__ xs) {
  const int r = blockIdx.x, lane = threadIdx.x & 31, groups = hidden / group;
  const row_place at = place(offsets, pad, experts, r);
  const __nv_bfloat16* row = x + static_cast<size_t>(sorted_token[r]) * hidden;
  for (int g = threadIdx.x >> 5; g < groups; g += blockDim.x >> 5)
    quantize_bf16_group(row + g * group, xq + static_cast<size_t>(at.q) * hidden + g * group,
                        xs + static_cast<size_t>(at.p) * groups + static_cast<size_t>(g) * at.m + (r - at.o), lane);
}

// hq[row] = e4m3 of SiLU(gate) * up per 128 columns, from the float values. The matmul left
// gate|up column-major ([2I][R]: one column per padded row), so a block takes 32 rows x one
// 128-column group: reads along the rows (coalesced), SiLU in shared memory, then one warp
// per row quantizes as quantize_x_rows does. Grid (ceil(rows / 32), I / 128), 128 threads.
__global__ void silu_quantize_columns(const __nv_bfloat16* __restrict__ gt, int R, const int* __restrict__ offsets,
                                      const int* __restrict__ pad, int experts, int rows, int inter,
                                      uint8_t* __restrict__ hq, float* __restrict__ hs) {
  __shared__ float h[group][33];
  const int r0 = blockIdx.x * 32, g = blockIdx.y, tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int q = r0 + tx < rows ? place(offsets, pad, experts, r0 + tx).q : -1;
  for (int c = ty; c < group; c += 4) {
    float v = 0.f;
    if (q >= 0) {
      const float a = __bfloat162float(gt[static_cast<size_t>(g * group + c) * R + q]);
      const float u = __bfloat162float(gt[static_cast<size_t>(inter + g * group + c) * R + q]);
      v = a / (1.f + __expf(-a)) * u;
    }
    h[c][tx] = v;
  }
  __syncthreads();
  const int groups = inter / group;
  for (int i = 0; i < 8; ++i) {
    const int lr = ty * 8 + i, r = r0 + lr;
    if (r >= rows) break;  // the same for the whole warp
    const row_place at = place(offsets, pad, experts, r);
    const float v[4] = {h[natural_col(tx, 0)][lr], h[natural_col(tx, 1)][lr], h[natural_col(tx, 2)][lr],
                        h[natural_col(tx, 3)][lr]};
    quantize_group(v, hq + static_cast<size_t>(at.q) * inter + g * group,
                   hs + static_cast<size_t>(at.p) * groups + static_cast<size_t>(g) * at.m + (r - at.o), tx);
  }
}

// y[r] (sorted order, row-major [rows, H]) from the down matmul's column-major [H][R]: 32 x 32
// tiles through shared memory. Grid (ceil(rows / 32), H / 32), 32 x 8 threads.
__global__ void rows_from_columns(const __nv_bfloat16* __restrict__ yt, int R, const int* __restrict__ offsets,
                                  const int* __restrict__ pad, int experts, int rows, int hidden,
                                  __nv_bfloat16* __restrict__ y) {
  __shared__ __nv_bfloat16 tile[32][34];
  const int r0 = blockIdx.x * 32, c0 = blockIdx.y * 32, tx = threadIdx.x, ty = threadIdx.y;
  const int q = r0 + tx < rows ? place(offsets, pad, experts, r0 + tx).q : -1;
  for (int j = ty; j < 32; j += 8) tile[j][tx] = q >= 0 ? yt[static_cast<size_t>(c0 + j) * R + q] : __float2bfloat16(0.f);
  __syncthreads();
  for (int j = ty; j < 32; j += 8)
    if (r0 + j < rows) y[static_cast<size_t>(r0 + j) * hidden + c0 + tx] = tile[tx][j];
}

constexpr size_t workspace_size = 16u << 20;  // per lane

}  // namespace

// The cuBLASLt descriptors of the two projections, and the algorithm found per projection and
// row bucket (a power of two): asking cuBLASLt per call would cost more than the small matmuls.
struct fp8_experts::layouts {
  cublasLtMatmulDesc_t desc[2] = {nullptr, nullptr};
  cublasLtMatrixLayout_t a[2] = {nullptr, nullptr}, b[2] = {nullptr, nullptr}, d[2] = {nullptr, nullptr};
  cublasLtMatmulPreference_t pref = nullptr;
  std::map<std::pair<int, int>, cublasLtMatmulAlgo_t> algos;
};

bool fp8_experts::available(std::string* why) {
  const lt_api& a = api();
  if (why) *why = a.error;
  return a.error.empty();
}

std::string fp8_experts::version() { return available() ? std::to_string(api().version) : ""; }

bool fp8_experts::fits(long long hidden, long long inter, long long b0, long long b1, std::string* why) {
  const std::string w = f8_block_misfit(hidden, inter, b0, b1, "the block-scaled matmul");
  if (why) *why = w;
  return w.empty();
}

fp8_experts::fp8_experts(cudaStream_t stream, const float* w13_scale, const float* w2_scale, int experts, int hidden,
                         int inter)
    : stream_(stream), E_(experts), H_(hidden), I_(inter) {
  std::string why;
  if (!available(&why)) throw unsupported("FP8 tensor-core path: " + why);
  const lt_api& A = api();
  cublasLtHandle_t h = nullptr;
  check_lt(A.create(&h), "cublasLtCreate");
  handle_ = h;
  lay_ = new layouts;
  const int KB[2] = {H_ / group, I_ / group}, MB[2] = {2 * I_ / group, H_ / group}, N[2] = {2 * I_, H_},
            K[2] = {H_, I_};
  // cuBLASLt's 128x128 scales: block (feature block nb, k block kb) at kb + nb * round_up(k blocks, 4).
  int pitch[2];
  for (int i = 0; i < 2; ++i) pitch[i] = (KB[i] + 3) / 4 * 4;
  s13_pitch_ = pitch[0];
  s2_pitch_ = pitch[1];
  if (pitch[0] == KB[0] && pitch[1] == KB[1]) {
    s13_ = w13_scale;
    s2_ = w2_scale;
  } else {
    const size_t n13 = static_cast<size_t>(E_) * MB[0] * pitch[0], n2 = static_cast<size_t>(E_) * MB[1] * pitch[1];
    check(cudaMalloc(&padded_, (n13 + n2) * 4), "FP8 path: padded scales");
    check(cudaMemsetAsync(padded_, 0, (n13 + n2) * 4, stream_), "FP8 path: padded scales");
    const float* src[2] = {w13_scale, w2_scale};
    float* dst[2] = {padded_, padded_ + n13};
    for (int i = 0; i < 2; ++i)
      check(cudaMemcpy2DAsync(dst[i], pitch[i] * 4, src[i], KB[i] * 4, KB[i] * 4, static_cast<size_t>(E_) * MB[i],
                              cudaMemcpyDeviceToDevice, stream_),
            "FP8 path: padded scales");
    s13_ = dst[0];
    s2_ = dst[1];
  }
  // Hopper's block-scaled FP8 matmul takes the 1x128 scales on A and the 128x128 ones on B
  // (TN): A is an expert's rows (m = its row count), B its weights (n = output features), and
  // D = A B^T comes out column-major: [features][rows], one column per row.
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const cublasLtMatmulMatrixScale_t sa = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F,
                                    sb = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
  for (int i = 0; i < 2; ++i) {
    check_lt(A.desc_create(&lay_->desc[i], CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    check_lt(A.desc_set(lay_->desc[i], CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
    check_lt(A.desc_set(lay_->desc[i], CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
    check_lt(A.desc_set(lay_->desc[i], CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &sa, sizeof sa), "A_SCALE_MODE");
    check_lt(A.desc_set(lay_->desc[i], CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &sb, sizeof sb), "B_SCALE_MODE");
    // Rows: [m, K] row-major is column-major K x m, used transposed; weights: K x N.
    check_lt(A.layout_create(&lay_->a[i], CUDA_R_8F_E4M3, K[i], 16, K[i]), "layout A");
    check_lt(A.layout_create(&lay_->b[i], CUDA_R_8F_E4M3, K[i], N[i], K[i]), "layout B");
    check_lt(A.layout_create(&lay_->d[i], CUDA_R_16BF, 16, N[i], 16), "layout D");
  }
  check_lt(A.pref_create(&lay_->pref), "cublasLtMatmulPreferenceCreate");
  workspace_bytes_ = workspace_size;
  check_lt(A.pref_set(lay_->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_, sizeof workspace_bytes_),
           "MAX_WORKSPACE_BYTES");
  check(cudaMalloc(&workspace_, workspace_bytes_ * lanes), "FP8 path: cuBLASLt workspace");
  check(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming), "FP8 path: events");
  for (int i = 0; i < lanes; ++i) {
    check(cudaStreamCreateWithFlags(&lane_[i], cudaStreamNonBlocking), "FP8 path: streams");
    check(cudaEventCreateWithFlags(&join_[i], cudaEventDisableTiming), "FP8 path: events");
  }
  check(cudaMallocHost(&host_offsets_, sizeof(int) * 2 * (E_ + 1)), "FP8 path: offsets");
  check(cudaMalloc(&pad_, sizeof(int) * (E_ + 1)), "FP8 path: padded offsets");
}

fp8_experts::~fp8_experts() {
  const lt_api& A = api();
  for (int i = 0; i < lanes; ++i) {
    if (lane_[i]) {
      cudaStreamSynchronize(lane_[i]);
      cudaStreamDestroy(lane_[i]);
    }
    if (join_[i]) cudaEventDestroy(join_[i]);
  }
  if (fork_) cudaEventDestroy(fork_);
  if (lay_) {
    for (int i = 0; i < 2; ++i) {
      if (lay_->desc[i]) A.desc_destroy(lay_->desc[i]);
      for (auto* l : {lay_->a[i], lay_->b[i], lay_->d[i]})
        if (l) A.layout_destroy(l);
    }
    if (lay_->pref) A.pref_destroy(lay_->pref);
    delete lay_;
  }
  if (handle_) A.destroy(static_cast<cublasLtHandle_t>(handle_));
  for (void* p : {static_cast<void*>(workspace_), static_cast<void*>(padded_), static_cast<void*>(pad_),
                  static_cast<void*>(xq_), static_cast<void*>(xs_), static_cast<void*>(g_), static_cast<void*>(hq_),
                  static_cast<void*>(hs_), static_cast<void*>(yt_), static_cast<void*>(y_)})
    if (p) cudaFree(p);
  if (host_offsets_) cudaFreeHost(host_offsets_);
}

void fp8_experts::ensure(size_t rows, size_t padded) {
  if (rows <= rows_ && padded <= padded_rows_) return;
  rows = std::max(rows, rows_);
  padded = std::max(padded, rows + row_block * static_cast<size_t>(E_));  // the most padding any routing needs
  check(cudaStreamSynchronize(stream_), "FP8 path: workspace");
  for (void** p : {reinterpret_cast<void**>(&xq_), reinterpret_cast<void**>(&xs_), reinterpret_cast<void**>(&g_),
                   reinterpret_cast<void**>(&hq_), reinterpret_cast<void**>(&hs_), reinterpret_cast<void**>(&yt_),
                   reinterpret_cast<void**>(&y_)}) {
    cudaFree(*p);
    *p = nullptr;
  }
  rows_ = padded_rows_ = 0;
  const size_t H = H_, I = I_, R = padded;
  check(cudaMalloc(&xq_, R * H), "FP8 path: quantized rows");
  check(cudaMalloc(&xs_, R * (H / group) * 4), "FP8 path: row scales");
  check(cudaMalloc(&g_, R * 2 * I * 2), "FP8 path: gate/up");
  check(cudaMalloc(&hq_, R * I), "FP8 path: quantized h");
  check(cudaMalloc(&hs_, R * (I / group) * 4), "FP8 path: h scales");
  check(cudaMalloc(&yt_, R * H * 2), "FP8 path: down output");
  check(cudaMalloc(&y_, rows * H * 2), "FP8 path: down output rows");
  rows_ = rows;
  padded_rows_ = padded;
}

template <class F>
void fp8_experts::over_lanes(F&& each_expert) {
  check(cudaEventRecord(fork_, stream_), "FP8 path: fork");
  for (int i = 0; i < lanes; ++i) check(cudaStreamWaitEvent(lane_[i], fork_, 0), "FP8 path: fork");
  int next = 0;
  for (int e = 0; e < E_; ++e)
    if (each_expert(e, next)) next = (next + 1) % lanes;
  for (int i = 0; i < lanes; ++i) {
    check(cudaEventRecord(join_[i], lane_[i]), "FP8 path: join");
    check(cudaStreamWaitEvent(stream_, join_[i], 0), "FP8 path: join");
  }
}

void fp8_experts::matmul(int which, int m, int ldd, const uint8_t* a, const float* a_scale, const uint8_t* b,
                         const float* b_scale, __nv_bfloat16* d, int lane) {
  const lt_api& A = api();
  auto h = static_cast<cublasLtHandle_t>(handle_);
  cublasLtMatmulDesc_t desc = lay_->desc[which];
  check_lt(A.desc_set(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof a_scale), "A_SCALE_POINTER");
  check_lt(A.desc_set(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof b_scale), "B_SCALE_POINTER");
  auto set_rows = [&](uint64_t rows, int64_t ld) {
    check_lt(A.layout_set(lay_->a[which], CUBLASLT_MATRIX_LAYOUT_COLS, &rows, sizeof rows), "layout A cols");
    check_lt(A.layout_set(lay_->d[which], CUBLASLT_MATRIX_LAYOUT_ROWS, &rows, sizeof rows), "layout D rows");
    check_lt(A.layout_set(lay_->d[which], CUBLASLT_MATRIX_LAYOUT_LD, &ld, sizeof ld), "layout D ld");
  };
  auto ask = [&](int rows) {
    cublasLtMatmulHeuristicResult_t r{};
    int found = 0;
    set_rows(static_cast<uint64_t>(rows), std::max(ldd, rows));
    const cublasStatus_t s = A.heuristic(h, desc, lay_->a[which], lay_->b[which], lay_->d[which], lay_->d[which],
                                         lay_->pref, 1, &r, &found);
    if (s != CUBLAS_STATUS_SUCCESS || found < 1)
      throw unsupported("FP8 tensor-core path: cuBLASLt " + std::to_string(api().version) +
                        " has no block-scaled FP8 matmul for " + std::to_string(rows) + " x " +
                        std::to_string(which == 0 ? 2 * I_ : H_) + " x " + std::to_string(which == 0 ? H_ : I_) +
                        " (status " + std::to_string(static_cast<int>(s)) + ")");
    return r.algo;
  };
  int bucket = 16;
  while (bucket < m) bucket *= 2;
  auto it = lay_->algos.find({which, bucket});
  if (it == lay_->algos.end()) it = lay_->algos.emplace(std::make_pair(which, bucket), ask(bucket)).first;
  cublasLtMatmulAlgo_t algo = it->second;
  const float one = 1.f, zero = 0.f;
  auto run = [&] {
    set_rows(static_cast<uint64_t>(m), ldd);
    return A.matmul(h, desc, &one, a, lay_->a[which], b, lay_->b[which], &zero, d, lay_->d[which], d, lay_->d[which],
                    &algo, static_cast<char*>(workspace_) + lane * workspace_bytes_, workspace_bytes_,
                    lane_[lane]);
  };
  cublasStatus_t s = run();
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) {
    // The bucket's algorithm does not take this row count: ask for this exact size.
    algo = ask(m);
    s = run();
  }
  check_lt(s, which == 0 ? "cublasLtMatmul (FP8 gate/up)" : "cublasLtMatmul (FP8 down)");
}

void fp8_experts::run_routed(const routed_rows& in, const uint8_t* w13, const uint8_t* w2, float* out) {
  if (in.top_k > max_combine_top_k)
    throw unsupported("FP8 tensor-core path: top_k " + std::to_string(in.top_k) + " > 32");
  int* offsets = host_offsets_;
  int* pad = host_offsets_ + E_ + 1;
  check(cudaMemcpyAsync(offsets, in.offsets, sizeof(int) * (E_ + 1), cudaMemcpyDeviceToHost, stream_),
        "FP8 path: offsets download");
  check(cudaStreamSynchronize(stream_), "FP8 path: offsets download");
  const int rows = offsets[E_];
  if (rows == 0) return;
  pad[0] = 0;
  for (int e = 0; e < E_; ++e) pad[e + 1] = pad[e] + (offsets[e + 1] - offsets[e] + row_block - 1) / row_block * row_block;
  const int R = pad[E_];
  ensure(static_cast<size_t>(rows), static_cast<size_t>(R));
  check(cudaMemcpyAsync(pad_, pad, sizeof(int) * (E_ + 1), cudaMemcpyHostToDevice, stream_), "FP8 path: padded offsets");
  quantize_x_rows<<<rows, 128, 0, stream_>>>(in.xb, in.sorted_token, in.offsets, pad_, E_, H_, xq_, xs_);
  check_launch("FP8 path: quantize x");
  const size_t w13_elems = static_cast<size_t>(2) * I_ * H_, w2_elems = static_cast<size_t>(H_) * I_;
  const size_t s13_elems = static_cast<size_t>(2 * I_ / group) * s13_pitch_,
               s2_elems = static_cast<size_t>(H_ / group) * s2_pitch_;
  const int IB = I_ / group;
  // One projection: each hit expert's block of rows (and its scales) times its weights, into
  // its columns of the column-major output.
  auto project = [&](int which, const uint8_t* rows_q, const float* rows_s, int K, const uint8_t* w, size_t w_elems,
                     const float* s, size_t s_elems, __nv_bfloat16* d) {
    over_lanes([&](int e, int lane) {
      const int m = pad[e + 1] - pad[e], p = pad[e];
      if (m == 0) return false;
      matmul(which, m, R, rows_q + static_cast<size_t>(p) * K, rows_s + static_cast<size_t>(p) * (K / group),
             w + e * w_elems, s + e * s_elems, d + p, lane);
      return true;
    });
  };
  project(0, xq_, xs_, H_, w13, w13_elems, s13_, s13_elems, g_);
  silu_quantize_columns<<<dim3((rows + 31) / 32, IB), 128, 0, stream_>>>(g_, R, in.offsets, pad_, E_, rows, I_, hq_, hs_);
  check_launch("FP8 path: SiLU and quantize h");
  project(1, hq_, hs_, I_, w2, w2_elems, s2_, s2_elems, yt_);
  rows_from_columns<<<dim3((rows + 31) / 32, H_ / 32), dim3(32, 8), 0, stream_>>>(yt_, R, in.offsets, pad_, E_, rows,
                                                                                 H_, y_);
  check_launch("FP8 path: rows from the down matmul's columns");
  launch_combine_rows(y_, in, padding{}, H_, out, stream_);
}

}  // namespace moereg::cuda
