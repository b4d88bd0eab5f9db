#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# stage_python.sh [BUILD_DIR] - for bench/python/device_python.sh on the GPU machine, into
# .carry/ (git-ignored): libmoereg.so with its plugins and backends (the CUDA one included: a
# build with nvcc), the moereg binary, moereg_cuda_tests, the shared libraries they need
# that the device image lacks, and the fixtures.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${MOEREG_FIXTURES_DIR:-$root/../shared/fixtures}
cd "$root"
[ -f "$build/lib/moereg/backends/libmoereg_backend_cuda.so" ] || { echo "no CUDA backend in $build (configure with nvcc present)" >&2; exit 1; }
rm -rf .carry && mkdir -p .carry/bin .carry/lib .carry/fixtures
cp "$build/bin/moereg" "$build/bin/moereg_cuda_tests" .carry/bin/
cp -a "$build"/lib/libmoereg.so* .carry/lib/
cp -r "$build/lib/moereg" .carry/lib/
for lib in $(ldd "$build/bin/moereg" "$build/lib/libmoereg.so" .carry/lib/moereg/plugins/*/*.so | awk '/=>/{print $3}' | sort -u); do
  case "$(basename "$lib")" in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*|libmoereg.so*) ;; *) cp -Ln "$lib" .carry/lib/ ;; esac
done
find .carry -type f \( -name '*.so*' -o -perm -u+x \) -exec sh -c 'file -b "$1" | grep -q ELF && strip --strip-debug "$1"' _ {} \;
cp -r "$fixtures"/. .carry/fixtures/
chmod -R go-w .carry
du -sh .carry
