# SPDX-License-Identifier: Apache-2.0
# carry_env.sh - sourced (`. bench/device/carry_env.sh`) by the scripts that run on the GPU
# machine from the repository root, with .carry/ from bench/device/stage.sh: the carried
# build's libraries, fixtures and CUDA backend (a MOEREG_CUDA_BACKEND already set is kept), and
# the directory of the libcublas.so.13 that the cuBLAS and cuBLASLt paths dlopen (PyTorch's
# wheel has one, the toolkit maybe another).
carry=$PWD/.carry
export MOEREG_FIXTURES_DIR=$carry/fixtures
export MOEREG_CUDA_BACKEND=${MOEREG_CUDA_BACKEND:-$carry/lib/moereg/backends/libmoereg_backend_cuda.so}
cublas_dir=$(python3 -c 'import glob,os,site
for s in site.getsitepackages():
    for p in glob.glob(os.path.join(s, "nvidia", "**", "libcublas.so.13"), recursive=True):
        print(os.path.dirname(p)); raise SystemExit' 2>/dev/null)
export LD_LIBRARY_PATH=$carry/lib${cublas_dir:+:$cublas_dir}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# with_backend LIB COMMAND...: COMMAND with LIB as the CUDA backend for the moereg CLI too. The
# CLI finds backends by directory (MOEREG_PLUGIN_PATH, then its installed root) and never reads
# $MOEREG_CUDA_BACKEND, which only the test binaries do: LIB goes, under the name the registry
# takes for the CUDA backend, into a directory of its own (one per LIB) that MOEREG_PLUGIN_PATH
# puts first. ran_backend checks afterwards that the run really loaded it.
with_backend() {
  local lib dir
  lib=$(readlink -f "$1"); shift
  dir=${TMPDIR:-/tmp}/moereg-backend-$(printf %s "$lib" | md5sum | cut -c1-12)
  mkdir -p "$dir/backends" && ln -sfn "$lib" "$dir/backends/libmoereg_backend_cuda.so"
  MOEREG_PLUGIN_PATH=$dir MOEREG_CUDA_BACKEND=$lib "$@"
}
# ran_backend JSON LIB: whether `moe bench --json`'s output JSON names LIB (through any links) as
# the backend library it loaded; says which it loaded when not (rc 1).
ran_backend() {
  local got
  got=$(python3 -c 'import json, os, sys; print(os.path.realpath(json.load(open(sys.argv[1]))["backend_library"]))' "$1" 2>/dev/null)
  [ "$got" = "$(readlink -f "$2")" ] && return 0
  echo "ran_backend: $1 ran '${got:-nothing readable}', not $2" >&2
  return 1
}
# Variant builds travel packed (.carry/old.tar.xz: seven backends are 42 MB loose, 3 MB packed,
# and the carried tree is limited to 64 MiB): `tar -C .carry -cJf .carry/old.tar.xz old && rm -rf
# .carry/old` here, unpacked into .carry/old/ on the device by the first script that sources this.
if [ -f "$carry/old.tar.xz" ] && [ ! -d "$carry/old" ]; then
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' "$carry/old.tar.xz" "$carry"
fi
