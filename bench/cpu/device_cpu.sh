#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_cpu.sh - the CPU backend on the GPU machine's host CPU (16 cores): its tests (every ISA
# the CPU runs, AVX-512 included where present) and `moe bench --backend cpu` for the three
# presets against PyTorch's eager loop on the same cores. Needs .carry/ from bench/device/stage.sh.
# The test binary has the build tree's paths compiled in; links make them resolve here.
set -uo pipefail
here=$(pwd)
[ -e /work/main ] || { mkdir -p /work && ln -s "$here" /work/main; }
[ -e /work/main/build ] || ln -s "$here/.carry" /work/main/build
mkdir -p /work/shared; [ -e /work/shared/fixtures ] || ln -s "$here/.carry/fixtures" /work/shared/fixtures
export LD_LIBRARY_PATH=$here/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) cores; flags: $(grep -m1 flags /proc/cpuinfo | grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx2' | sort -u | tr '\n' ' ')"
.carry/bin/moereg_tests --gtest_filter='cpu_backend*:MoeRunFp8*:MoeRun.*' 2>&1 | grep -E "^\[  (PASSED|FAILED) |FAILED|Failure|isa" | head -20
for p in ${PRESETS:-qwen3_30b_a3b mixtral_8x7b deepseek_v3_e64}; do
  .carry/bin/moereg moe bench --backend cpu --preset "$p" --tokens "${TOKENS:-1,16,128,1024}" --min-seconds "${MIN_SECONDS:-0.3}" --log-level warn 2>&1 | tail -7
done
