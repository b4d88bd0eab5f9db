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
