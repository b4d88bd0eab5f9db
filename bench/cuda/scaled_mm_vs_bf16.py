#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""scaled_mm_vs_bf16.py - how much faster cuBLASLt's block-scaled FP8 matmul is than its bf16
GEMM at the sizes the CUDA backend's FP8 tensor-core path (fp8_experts.cu) issues: one expert's
gate/up and down at DeepSeek-V3's H = 7168, I = 2048, and all rows in one matmul. PyTorch's
torch._scaled_mm with 1x128 activation scales and 128x128 weight scales runs the same cuBLASLt
call; the bf16 column, measured in the same run, is the reference. On the GPU machine:
    python3 bench/cuda/scaled_mm_vs_bf16.py
"""
import time

import torch


def median_ms(f, batches=7, per_batch=50):
    """Median over batches of the mean time of per_batch calls queued back to back (as the
    backend queues its matmuls: no synchronization between them)."""
    for _ in range(5):
        f()
    times = []
    for _ in range(batches):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(per_batch):
            f()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) / per_batch)
    times.sort()
    return times[len(times) // 2] * 1e3


def main():
    shapes = [("one expert's gate/up, 512 rows", 512, 4096, 7168), ("one expert's down, 512 rows", 512, 7168, 2048),
              ("one expert's gate/up, 128 rows", 128, 4096, 7168), ("gate/up, 4096 rows", 4096, 4096, 7168),
              ("gate/up, 32768 rows (all experts at T=4096)", 32768, 4096, 7168)]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'shape':46s} {'M x N x K':>20s} | {'bf16 ms':>8s} {'TFLOP/s':>7s} | {'fp8 block ms':>12s} {'TFLOP/s':>7s} | "
          f"{'bf16 / fp8':>10s}")
    for name, M, N, K in shapes:
        a, b = torch.randn(M, K, device="cuda"), torch.randn(N, K, device="cuda")
        ab, bb = a.bfloat16(), b.bfloat16()
        a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
        sa = torch.ones(K // 128, M, device="cuda").t()  # [M, K/128], M contiguous
        sb = torch.ones(N // 128, K // 128, device="cuda").t()  # [K/128, N/128] of the [K, N] operand
        t_bf16 = median_ms(lambda: ab @ bb.t())
        t_fp8 = median_ms(lambda: torch._scaled_mm(a8, b8.t(), sa, sb, out_dtype=torch.bfloat16))
        flop = 2 * M * N * K
        print(f"{name:46s} {f'{M} x {N} x {K}':>20s} | {t_bf16:8.3f} {flop / t_bf16 / 1e9:7.0f} | {t_fp8:12.3f} "
              f"{flop / t_fp8 / 1e9:7.0f} | {t_bf16 / t_fp8:10.2f}")


if __name__ == "__main__":
    main()
