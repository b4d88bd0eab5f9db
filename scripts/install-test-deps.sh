#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what the test suite and the benchmarks need beyond scripts/install-deps.sh, on
# Debian 12 (apt); scripts/test.sh runs it first. `--list` prints the packages, one a line.
# Idempotent. Add a package needed only by tests or benchmarks here, never to install-deps.sh.
set -euo pipefail
packages=(
  libgtest-dev libgmock-dev     # the GoogleTest suite
  clang libclang-rt-14-dev      # the fuzz targets (libFuzzer) and their sanitizer runtime
  python3-torch                 # the PyTorch reference of `moereg moe bench` and its test
  dpkg-dev file pkg-config      # the .deb test: cpack's dpkg-shlibdeps, and the SDK's .pc file
)
source "$(dirname "$0")/lib/apt.sh"
apt_install "moereg test dependencies" "$@"
