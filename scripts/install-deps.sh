#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what moereg itself needs to build and run on Debian 12 (apt), and nothing more:
# the README's quick start runs this. What only the tests and benchmarks need (GoogleTest,
# PyTorch, clang for the fuzzers, ...) is in scripts/install-test-deps.sh, which
# scripts/test.sh runs. `--list` prints the packages, one a line. Idempotent.
#
# tests/packaging/check_deps.sh fails when a test- or benchmark-only package appears here.
set -euo pipefail
packages=(
  build-essential cmake ninja-build
  libboost-dev libboost-program-options-dev libboost-filesystem-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev
  python3-dev python3-pybind11 python3-numpy   # the Python module (python/, docs/python.md); no PyTorch
  libopenmpi-dev openmpi-bin                    # mpirun -np N moereg convert (docs/mpi.md); optional: MOEREG_MPI=OFF
)
source "$(dirname "$0")/lib/apt.sh"
apt_install "moereg build dependencies" "$@"
