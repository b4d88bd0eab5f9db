#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's quick start installs only what moereg needs: fails when scripts/install-deps.sh
# (its first command) lists a package that only tests or benchmarks need, or one that
# scripts/install-test-deps.sh (run by scripts/test.sh) also lists.
# Usage: check_deps.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: check_deps.sh SOURCE_DIR}
fail=0

mapfile -t build < <("$src/scripts/install-deps.sh" --list)
mapfile -t extra < <("$src/scripts/install-test-deps.sh" --list)
if ((${#build[@]} < 3)); then
  echo "scripts/install-deps.sh --list printed ${#build[@]} packages; expected the build dependencies" >&2
  exit 1
fi

# What the Python module needs to build and run: the README's setup command builds it. These
# three, and no other python3 package, may be in the quick start.
module_packages=(python3-dev python3-pybind11 python3-numpy)
# Open MPI builds the MPI front end of convert (docs/mpi.md); the quick start installs it. MPICH
# and the other MPI packages are still nobody's dependency.
mpi_packages=(libopenmpi-dev openmpi-bin)
# Packages that only the tests, fuzzers, benchmarks or interop checks use (shell patterns).
test_only=(
  'python3-torch*' 'python3-*' 'python-is-python3' 'pypy*'
  'nodejs' 'npm' 'node-*' 'libnode*'
  '*openmpi*' '*mpich*' 'mpi-default-*'  # but mpi_packages, above
  'libpython3*'
  'clang*' 'libclang*' 'llvm*' 'libfuzzer*'
  'libgtest*' 'libgmock*' 'googletest*' 'google-mock'
  'valgrind' 'gdb' 'dpkg-dev' 'file' 'pkg-config' 'pkgconf'
  'nvidia-*' 'cuda*' 'libcublas*'
)
for p in "${build[@]}"; do
  if printf '%s\n' "${module_packages[@]}" "${mpi_packages[@]}" | grep -qx "$p"; then continue; fi
  for pat in "${test_only[@]}"; do
    # shellcheck disable=SC2053  # $pat is a glob on purpose
    if [[ $p == $pat ]]; then
      echo "scripts/install-deps.sh installs '$p', which only tests or benchmarks need (matches '$pat'): move it to scripts/install-test-deps.sh" >&2
      fail=1
    fi
  done
  for q in "${extra[@]}"; do
    if [[ $p == "$q" ]]; then
      echo "'$p' is in both scripts/install-deps.sh and scripts/install-test-deps.sh: keep it in one" >&2
      fail=1
    fi
  done
done

# The test command still gets what the quick start leaves out.
for need in python3-torch libgtest-dev; do
  if ! printf '%s\n' "${extra[@]}" | grep -qx "$need"; then
    echo "scripts/install-test-deps.sh does not install $need, which the tests need" >&2
    fail=1
  fi
done
if ! grep -q 'scripts/install-test-deps.sh' "$src/scripts/test.sh"; then
  echo "scripts/test.sh does not run scripts/install-test-deps.sh" >&2
  fail=1
fi
((fail == 0)) && echo "quick start installs ${#build[@]} packages, none test-only; test extras: ${extra[*]}"
exit $fail
