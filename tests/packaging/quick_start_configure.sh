#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The quick start's build configures on a machine with only scripts/install-deps.sh's
# packages: without GoogleTest (hidden here), MOEREG_BUILD_TESTS=AUTO leaves the tests out
# instead of failing. Usage: quick_start_configure.sh SOURCE_DIR SCRATCH_DIR [cmake args...]
set -euo pipefail
src=${1:?usage: quick_start_configure.sh SOURCE_DIR SCRATCH_DIR}
scratch=${2:?usage: quick_start_configure.sh SOURCE_DIR SCRATCH_DIR}
shift 2
rm -rf "$scratch" && mkdir -p "$scratch"
if ! out=$(cmake -S "$src" -B "$scratch" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEREG_CUDA=OFF \
  -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON "$@" 2>&1); then
  echo "$out" >&2
  echo "the quick start's configure fails without GoogleTest" >&2
  exit 1
fi
if ! grep -q '^MOEREG_BUILD_TESTS:STRING=AUTO$' "$scratch/CMakeCache.txt" || grep -q 'moereg_tests' "$scratch/build.ninja"; then
  echo "$out" >&2
  echo "without GoogleTest the configure should succeed with the tests left out" >&2
  exit 1
fi
grep -q '^build bin/moereg:' "$scratch/build.ninja" || { echo "build.ninja has no moereg binary" >&2; exit 1; }
rm -rf "$scratch"
echo "configures without GoogleTest; tests left out"
