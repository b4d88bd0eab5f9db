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
# takes for the CUDA backend, into a directory of its own that MOEREG_PLUGIN_PATH puts first.
# Refuses (rc 3) where `moereg plugins` then names another library as the loaded CUDA backend.
with_backend() {
  local lib dir loaded
  lib=$(readlink -f "$1"); shift
  dir=$(mktemp -d)/backends; mkdir -p "$dir"
  ln -s "$lib" "$dir/libmoereg_backend_cuda.so"
  loaded=$(MOEREG_PLUGIN_PATH=${dir%/backends} "$carry/bin/moereg" plugins 2>&1 | awk '$1 == "cuda" && $2 == "backend" && $5 == "loaded" {print $NF}')
  if [ "$(readlink -f "$loaded")" != "$lib" ]; then
    echo "with_backend: the CLI loads '${loaded:-no CUDA backend}', not $lib" >&2; return 3
  fi
  MOEREG_PLUGIN_PATH=${dir%/backends} MOEREG_CUDA_BACKEND=$lib "$@"
}
