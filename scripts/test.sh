#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds moereg and runs every test: a Release build, then an AddressSanitizer +
# UndefinedBehaviorSanitizer build of the same tests, then a short fuzz run of the header
# parsers when the fuzz targets exist. Exits non-zero on the first failure. Both builds are
# unity builds (CMAKE_UNITY_BUILD: eight sources compiled as one), which saves CPU on a 2-core
# CI machine and keeps every source file free of name clashes with its neighbours. First installs
# the test suite's own dependencies (scripts/install-test-deps.sh): the quick start's
# scripts/install-deps.sh installs only what moereg needs.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== Test dependencies"
scripts/install-test-deps.sh
scripts/fetch-llamacpp.sh || echo "warning: llama.cpp package not installed; the LlamaCpp tests will skip"

echo "== Release build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_UNITY_BUILD=ON -DMOEREG_BUILD_TESTS=ON -DMOEREG_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" -DMOEREG_SANITIZE=ON -DCMAKE_UNITY_BUILD=ON -DMOEREG_BUILD_TESTS=ON -DMOEREG_WERROR=ON -DMOEREG_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

if [[ -x .ci/fuzz.sh ]]; then
  echo "== Fuzz the header parsers (${FUZZ_SECONDS:-30} s each)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-30} .ci/fuzz.sh
fi
echo "== all tests passed"
