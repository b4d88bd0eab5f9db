#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_probe_builds.sh - here, after `cmake --build build` and bench/device/stage.sh: two more
# builds of the CUDA backend whose wgmma FP8 GEMM (fp8_grouped_gemm.cu) runs one half of its
# pipeline only (bench/cuda/experiments/probes.patch), into .carry/old/, so that the full
# kernel's time can be read against each. Their outputs are wrong by design:
#   f8_loads_only.so  the consumers skip the wgmmas: the producer's loads (TMA, the gather's
#                     cp.async, the scales) and the barrier hand-over alone
#   f8_mma_only.so    the producer loads nothing: the wgmmas and the promotion alone, on
#                     whatever the stages hold
# Then on the GPU machine (carry .carry), `bash bench/cuda/f8_diagnose.sh`, or by hand:
#   VARIANTS="loads_only=$PWD/.carry/old/f8_loads_only.so mma_only=$PWD/.carry/old/f8_mma_only.so" \
#     ONLY="bf16 wgmma loads_only mma_only" TOKENS=1024,4096 bash bench/cuda/f8_gemm_ab.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATCH=$here/experiments/probes.patch
bash "$here/variant_build.sh" f8_loads_only -DMOEREG_F8_PROBE=1
bash "$here/variant_build.sh" f8_mma_only -DMOEREG_F8_PROBE=2
