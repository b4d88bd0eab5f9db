#!/bin/bash
# device_run.sh - run on the GPU machine from the repository root, with .device/ carried:
# the CUDA tests, then the benchmark. Logs and tables land in $OUT (or ./out).
# Build here first and stage with bench/cuda/stage_device.sh.
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export MOEREG_FIXTURES_DIR=$PWD/.device/fixtures
export MOEREG_CUDA_BACKEND=$PWD/.device/lib/libmoereg_backend_cuda.so
export PYTHONUNBUFFERED=1
# The cuBLAS path dlopens libcublas.so.13: PyTorch's wheel has one, the toolkit maybe another.
cublas_dir=$(python3 -c 'import glob,os,site
for s in site.getsitepackages():
    for p in glob.glob(os.path.join(s, "nvidia", "**", "libcublas.so.13"), recursive=True):
        print(os.path.dirname(p)); raise SystemExit' 2>/dev/null)
export LD_LIBRARY_PATH=${cublas_dir:+$cublas_dir:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  .device/bin/moereg_cuda_tests ${GTEST_ARGS:-} 2>&1 | tee "$OUT/tests.log" | grep -E "^\[ *(fixture|random|tiles|  FAILED|  PASSED) |Failure|Expected|Which is|actual|error|rel L2" | head -80
  echo "tests exit: ${PIPESTATUS[0]}"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  python3 bench/cuda/bench_moe.py --lib "$MOEREG_CUDA_BACKEND" --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | tail -40
fi
