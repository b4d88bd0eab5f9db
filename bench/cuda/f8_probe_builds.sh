#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_probe_builds.sh [BUILD_DIR] - here, after `cmake --build BUILD_DIR` (default build) and
# bench/device/stage.sh: three more builds of the CUDA backend for the wgmma FP8 GEMM
# (fp8_grouped_gemm.cu), into .carry/old/. Two run one half of its pipeline only
# (MOEREG_F8_PROBE), their outputs wrong by design, so that the full kernel's time can be read
# against each:
#   f8_loads_only.so  the consumers skip the wgmmas: the producer's loads (TMA, the gather's
#                     cp.async, the scales) and the barrier hand-over alone
#   f8_mma_only.so    the producer loads nothing: the wgmmas and the promotion alone, on
#                     whatever the stages hold
# and one is a candidate kernel (MOEREG_F8_WIDE: 128 x 256 tiles with a rescaled accumulator
# where n is a multiple of 256, docs/cuda.md), to be tested and timed before it replaces the
# library's 128 x 128 tile:
#   f8_wide.so
# Each object is compiled with the build's own nvcc command plus the define and linked with its
# own link command (the sources and the build are not touched). Then on the GPU machine (carry
# .carry), `bash bench/cuda/f8_diagnose.sh` tests f8_wide.so and times all three beside the
# library, or by hand:
#   VARIANTS="loads_only=$PWD/.carry/old/f8_loads_only.so mma_only=$PWD/.carry/old/f8_mma_only.so" \
#     ONLY="bf16 wgmma loads_only mma_only" TOKENS=1024,4096 bash bench/cuda/f8_gemm_ab.sh
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/$build"
obj=backends/cuda/CMakeFiles/moereg_backend_cuda.dir/src/fp8_grouped_gemm.cu.o
lib=lib/moereg/backends/libmoereg_backend_cuda.so
compile="$(ninja -t commands moereg_backend_cuda | grep -F -- "-o $obj") "
link="$(ninja -t commands moereg_backend_cuda | grep -F -- "-o $lib") "
[[ $compile == *"-o $obj "* && $link == *"-o $lib "* ]] ||
  { echo "f8_probe_builds.sh: no nvcc or link command for the CUDA backend in $build" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$root/.carry/old"
for p in MOEREG_F8_PROBE=1:loads_only MOEREG_F8_PROBE=2:mma_only MOEREG_F8_WIDE=1:wide; do
  define=${p%%:*} name=${p#*:}
  # The build's commands with the probe's object, depfile and library in $tmp: the build's
  # own object and library are left as they were.
  c=${compile//-MF $obj.d /-MF $tmp/probe.d }
  c=${c//-o $obj /-D$define -o $tmp/probe.o }
  l=${link//$obj /$tmp/probe.o }
  l=${l//-o $lib /-o $tmp/f8_$name.so }
  [[ $c != *"-o $obj "* && $l != *"-o $lib "* ]] || { echo "f8_probe_builds.sh: could not redirect the commands" >&2; exit 1; }
  eval "$c"
  eval "$l"
  cp "$tmp/f8_$name.so" "$root/.carry/old/f8_$name.so"
  echo "built .carry/old/f8_$name.so"
done
