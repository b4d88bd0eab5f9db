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
# The quick start builds the Python module too when its packages (install-deps.sh) are there.
if [ -f /usr/lib/cmake/pybind11/pybind11Config.cmake ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  grep -q 'python/moereg/_moereg' "$scratch/build.ninja" || {
    echo "$out" >&2
    echo "python3-pybind11 and python3-numpy are installed, but the quick start's build has no Python module" >&2
    exit 1
  }
fi
rm -rf "$scratch"
echo "configures without GoogleTest; tests left out"
