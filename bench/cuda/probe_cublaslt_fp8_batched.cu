// SPDX-License-Identifier: Apache-2.0
// probe_cublaslt_fp8_batched.cu - does this machine's cuBLASLt run a strided-batched
// block-scaled FP8 matmul (1x128 scales on A, 128x128 on B, as fp8_experts lays them out), and
// does it take each batch member's scales from its own slice of the scale tensors? Runs the
// batch of 2 as one call and as two single calls (member i's pointers offset by hand) and
// prints the largest difference; then the batched member 1 against member 1 computed with
// member 0's scales (a library that ignored the batch for scales would match that instead).
// Answers whether the FP8 path could issue one call for all experts (docs/cuda.md, "FP8
// experts"). Build and run on the GPU machine:
//   nvcc -std=c++17 -arch=sm_90a bench/cuda/probe_cublaslt_fp8_batched.cu -lcublasLt -o /tmp/pb && /tmp/pb
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace {

constexpr int m = 256, n = 512, k = 512, batch = 2;
constexpr int kb = k / 128, nb = n / 128;  // scale blocks; kb is a multiple of 4 (no padding)

struct matmul {
  cublasLtHandle_t h;
  cublasLtMatmulDesc_t d;
  cublasLtMatrixLayout_t A, B, D;
  cublasLtMatmulPreference_t p;
  void* ws;
  bool ok = false;
  matmul(cublasLtHandle_t handle, int count) : h(handle) {
    cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const cublasLtMatmulMatrixScale_t sa = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F,
                                      sb = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &sa, sizeof sa);
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &sb, sizeof sb);
    cublasLtMatrixLayoutCreate(&A, CUDA_R_8F_E4M3, k, m, k);
    cublasLtMatrixLayoutCreate(&B, CUDA_R_8F_E4M3, k, n, k);
    cublasLtMatrixLayoutCreate(&D, CUDA_R_16BF, m, n, m);
    if (count > 1) {
      const int32_t c = count;
      const int64_t sA = int64_t(k) * m, sB = int64_t(k) * n, sD = int64_t(m) * n;
      for (auto [l, s] : {std::pair{A, sA}, {B, sB}, {D, sD}}) {
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &c, sizeof c);
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s, sizeof s);
      }
    }
    cublasLtMatmulPreferenceCreate(&p);
    size_t wsb = 32u << 20;
    cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cudaMalloc(&ws, wsb);
  }
  cublasStatus_t run(const void* a, const float* as, const void* b, const float* bs, void* out) {
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &as, sizeof as);
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &bs, sizeof bs);
    cublasLtMatmulHeuristicResult_t r{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, d, A, B, D, D, p, 1, &r, &found);
    if (st != CUBLAS_STATUS_SUCCESS || found < 1) {
      std::printf("  heuristic: status %d, %d algorithms\n", static_cast<int>(st), found);
      return st != CUBLAS_STATUS_SUCCESS ? st : CUBLAS_STATUS_NOT_SUPPORTED;
    }
    const float one = 1.f, zero = 0.f;
    st = cublasLtMatmul(h, d, &one, a, A, b, B, &zero, out, D, out, D, &r.algo, ws, 32u << 20, nullptr);
    cudaDeviceSynchronize();
    return st;
  }
};

std::vector<float> download(const __nv_bfloat16* d, size_t count) {
  std::vector<__nv_bfloat16> h(count);
  cudaMemcpy(h.data(), d, count * 2, cudaMemcpyDeviceToHost);
  std::vector<float> f(count);
  for (size_t i = 0; i < count; ++i) f[i] = __bfloat162float(h[i]);
  return f;
}

double max_rel(const float* a, const float* b, size_t count) {
  double m = 0, ref = 0;
  for (size_t i = 0; i < count; ++i) {
    m = std::fmax(m, std::fabs(double(a[i]) - b[i]));
    ref = std::fmax(ref, std::fabs(double(b[i])));
  }
  return m / (ref > 0 ? ref : 1);
}

}  // namespace

int main() {
  cublasLtHandle_t h;
  if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
  std::printf("cuBLASLt %zu: batch %d of [%d x %d] x [%d x %d]^T, e4m3, 1x128 scales on A, 128x128 on B\n",
              cublasLtGetVersion(), batch, m, k, n, k);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> val(-2.f, 2.f), sc(0.25f, 4.f);
  std::vector<uint8_t> a(size_t(batch) * m * k), b(size_t(batch) * n * k);
  for (auto& q : a) q = __nv_cvt_float_to_fp8(val(rng), __NV_SATFINITE, __NV_E4M3);
  for (auto& q : b) q = __nv_cvt_float_to_fp8(val(rng), __NV_SATFINITE, __NV_E4M3);
  std::vector<float> as(size_t(batch) * m * kb), bs(size_t(batch) * nb * kb);
  for (auto& s : as) s = sc(rng);
  for (auto& s : bs) s = sc(rng);
  uint8_t *da, *db;
  float *das, *dbs;
  __nv_bfloat16 *d1, *d2;
  cudaMalloc(&da, a.size());
  cudaMalloc(&db, b.size());
  cudaMalloc(&das, as.size() * 4);
  cudaMalloc(&dbs, bs.size() * 4);
  cudaMalloc(&d1, size_t(batch) * m * n * 2);
  cudaMalloc(&d2, size_t(batch) * m * n * 2);
  cudaMemcpy(da, a.data(), a.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(das, as.data(), as.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dbs, bs.data(), bs.size() * 4, cudaMemcpyHostToDevice);
  matmul batched(h, batch), single(h, 1);
  const cublasStatus_t s0 = single.run(da, das, db, dbs, d2);
  std::printf("single call (member 0 alone): status %d\n", static_cast<int>(s0));
  if (s0 != CUBLAS_STATUS_SUCCESS) {
    std::printf("RESULT: no block-scaled FP8 matmul here at all\n");
    return 0;
  }
  const cublasStatus_t sb = batched.run(da, das, db, dbs, d1);
  std::printf("batched call: status %d\n", static_cast<int>(sb));
  if (sb != CUBLAS_STATUS_SUCCESS) {
    std::printf("RESULT: strided-batched block-scaled FP8 is not available here\n");
    return 0;
  }
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t s = single.run(da + size_t(i) * m * k, das + size_t(i) * m * kb, db + size_t(i) * n * k,
                                        dbs + size_t(i) * nb * kb, d2 + size_t(i) * m * n);
    if (s != CUBLAS_STATUS_SUCCESS) std::printf("single call %d: status %d\n", i, static_cast<int>(s));
  }
  const std::vector<float> r1 = download(d1, size_t(batch) * m * n), r2 = download(d2, size_t(batch) * m * n);
  double worst = 0;
  for (int i = 0; i < batch; ++i) {
    const double e = max_rel(r1.data() + size_t(i) * m * n, r2.data() + size_t(i) * m * n, size_t(m) * n);
    std::printf("member %d: batched vs its own single call: max |diff| / max %.3e\n", i, e);
    worst = std::fmax(worst, e);
  }
  // Member 1 with member 0's scales: what a batch that ignored the scales' slices would give.
  single.run(da + size_t(m) * k, das, db + size_t(n) * k, dbs, d2);
  const std::vector<float> wrong = download(d2, size_t(m) * n);
  std::printf("member 1 batched vs member 1 on member 0's scales: max |diff| / max %.3e\n",
              max_rel(r1.data() + size_t(m) * n, wrong.data(), size_t(m) * n));
  std::printf("RESULT: %s\n", worst < 1e-2 ? "batched FP8 takes each member's scales from its own slice"
                                           : "batched FP8 runs but does not match per-member calls");
  return 0;
}
