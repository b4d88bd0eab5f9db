// SPDX-License-Identifier: Apache-2.0
// probe_cublaslt_fp8.cu - which block-scaled FP8 matmuls this machine's cuBLASLt offers:
// asks cublasLtMatmulAlgoGetHeuristic for each scale-mode pair, transpose pair and size and
// prints the status and the number of algorithms. A diagnostic for fp8_experts (the CUDA
// backend's FP8 tensor-core path); build and run on the GPU machine:
//   nvcc -std=c++17 -arch=sm_90a bench/cuda/probe_cublaslt_fp8.cu -lcublasLt -o /tmp/probe && /tmp/probe
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdio>

int main() {
  cublasLtHandle_t h;
  if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
  std::printf("cuBLASLt %zu\n", cublasLtGetVersion());
  float* s = nullptr;
  cudaMalloc(&s, 1 << 20);
  const struct { cublasLtMatmulMatrixScale_t a, b; const char* name; } modes[] = {
      {CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, "A vec128 B blk128"},
      {CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, "A blk128 B vec128"},
      {CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, "A vec128 B vec128"},
      {CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F, CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F, "scalar scalar"}};
  const cudaDataType_t dtypes[] = {CUDA_R_16BF};
  for (const auto& md : modes)
    for (cudaDataType_t dt : dtypes)
      for (int m : {16, 256})
        for (int n : {256, 4096})
         for (int k : {128, 256, 2048, 7168}) {
          cublasLtMatmulDesc_t d;
          cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
          cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
          cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
          cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
          cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &md.a, sizeof md.a);
          cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &md.b, sizeof md.b);
          cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &s, sizeof s);
          cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &s, sizeof s);
          cublasLtMatrixLayout_t A, B, C;
          // Made for 16 rows, then resized as fp8_experts does.
          cublasLtMatrixLayoutCreate(&A, CUDA_R_8F_E4M3, k, 16, k);
          cublasLtMatrixLayoutCreate(&B, CUDA_R_8F_E4M3, k, n, k);
          cublasLtMatrixLayoutCreate(&C, dt, 16, n, 16);
          const uint64_t rows = m;
          const int64_t ld = m;
          cublasLtMatrixLayoutSetAttribute(A, CUBLASLT_MATRIX_LAYOUT_COLS, &rows, sizeof rows);
          cublasLtMatrixLayoutSetAttribute(C, CUBLASLT_MATRIX_LAYOUT_ROWS, &rows, sizeof rows);
          cublasLtMatrixLayoutSetAttribute(C, CUBLASLT_MATRIX_LAYOUT_LD, &ld, sizeof ld);
          cublasLtMatmulPreference_t p;
          cublasLtMatmulPreferenceCreate(&p);
          size_t ws = 32u << 20;
          cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
          cublasLtMatmulHeuristicResult_t r[4];
          int found = 0;
          const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, d, A, B, C, C, p, 4, r, &found);
          std::printf("%-18s D %-4s m %4d n %4d k %4d: status %d, %d algorithms\n", md.name, dt == CUDA_R_16BF ? "bf16" : "f32",
                      m, n, k, static_cast<int>(st), found);
          if (found > 0 && m == 16 && n == 256 && k == 256) {
            // The algorithm found for 16 rows, run for other row counts (fp8_experts reuses it).
            void *a = nullptr, *b = nullptr, *c = nullptr, *w = nullptr;
            cudaMalloc(&a, 1 << 20);
            cudaMalloc(&b, 1 << 20);
            cudaMalloc(&c, 1 << 22);
            cudaMalloc(&w, ws);
            for (int mm : {1, 4, 8, 12, 16, 24, 151, 160}) {
              const uint64_t r2 = mm;
              const int64_t ld2 = (mm + 15) / 16 * 16;
              cublasLtMatrixLayoutSetAttribute(A, CUBLASLT_MATRIX_LAYOUT_COLS, &r2, sizeof r2);
              cublasLtMatrixLayoutSetAttribute(C, CUBLASLT_MATRIX_LAYOUT_ROWS, &r2, sizeof r2);
              cublasLtMatrixLayoutSetAttribute(C, CUBLASLT_MATRIX_LAYOUT_LD, &ld2, sizeof ld2);
              const float one = 1.f, zero = 0.f;
              const cublasStatus_t ms = cublasLtMatmul(h, d, &one, a, A, b, B, &zero, c, C, c, C, &r[0].algo, w, ws, 0);
              int again = 0;
              cublasLtMatmulHeuristicResult_t r3;
              const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(h, d, A, B, C, C, p, 1, &r3, &again);
              std::printf("    run with m %3d (ld %3lld): matmul status %d; heuristic for it: status %d, %d\n", mm,
                          static_cast<long long>(ld2), static_cast<int>(ms), static_cast<int>(hs), again);
            }
            cudaDeviceSynchronize();
            std::printf("    cuda: %s\n", cudaGetErrorString(cudaGetLastError()));
          }
          cublasLtMatmulPreferenceDestroy(p);
          cublasLtMatrixLayoutDestroy(A);
          cublasLtMatrixLayoutDestroy(B);
          cublasLtMatrixLayoutDestroy(C);
          cublasLtMatmulDescDestroy(d);
        }
  return 0;
}
