#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# stage.sh [BUILD_DIR] - everything the GPU machine needs, built here, into .carry/ (git-ignored):
# the moereg binary with its plugins and both backends, the test binaries, the shared libraries
# the binary needs that the device image may lack, and the fixtures (small). Then on the device:
#   bash bench/device/run_all.sh      (carry: [".carry"])
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${MOEREG_FIXTURES_DIR:-$root/../shared/fixtures}
cd "$root"
rm -rf .carry && mkdir -p .carry/bin .carry/lib .carry/fixtures
cp "$build/bin/moereg" "$build/bin/moereg_cuda_tests" .carry/bin/
# The CPU suite only where it was built (the GPU runs that time kernels do not need it).
[ -f "$build/bin/moereg_tests" ] && cp "$build/bin/moereg_tests" .carry/bin/
cp -r "$build/lib/moereg" .carry/lib/
for lib in $(ldd "$build/bin/moereg" .carry/lib/moereg/plugins/*/*.so | awk '/=>/{print $3}' | sort -u); do
  case "$(basename "$lib")" in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*) ;; *) cp -L "$lib" .carry/lib/ ;; esac
done
cp -r "$fixtures"/. .carry/fixtures/
# The registry tests' small plugin libraries, where the test binary looks for them
# (build/tests/abi/lib; bench/cpu/device_cpu.sh links build to .carry on the device).
mkdir -p .carry/tests/abi/lib && cp "$build"/tests/abi/lib/*.so .carry/tests/abi/lib/
chmod -R go-w .carry
du -sh .carry
