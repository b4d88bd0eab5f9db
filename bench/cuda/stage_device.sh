#!/bin/bash
# stage_device.sh BUILD_DIR - copy what the GPU machine needs into .device/ (gitignored):
# the backend library, the test binary and the fixture files the tests read.
set -eu
build=${1:?usage: stage_device.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${MOEREG_FIXTURES_DIR:-$root/../shared/fixtures}
rm -rf "$root/.device/lib" "$root/.device/bin" "$root/.device/fixtures"
mkdir -p "$root/.device/lib" "$root/.device/bin"
cp "$build/lib/moereg/backends/libmoereg_backend_cuda.so" "$root/.device/lib/"
cp "$build/bin/moereg_cuda_tests" "$root/.device/bin/"
for fam in qwen3_moe qwen3_vl_moe qwen3_5_moe mixtral deepseek_v2 deepseek_v3; do
  mkdir -p "$root/.device/fixtures/$fam/hf"
  cp "$fixtures/$fam/fixture.json" "$fixtures/$fam/transformers_v5.safetensors" "$fixtures/$fam/moe_block.safetensors" \
     "$root/.device/fixtures/$fam/"
  cp "$fixtures/$fam/hf/config.json" "$root/.device/fixtures/$fam/hf/"
done
du -sh "$root/.device"
