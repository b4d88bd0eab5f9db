#!/usr/bin/env bash
# run_all.sh - on the GPU machine, from the repository root, with .carry/ from
# bench/device/stage.sh: the steps named in STEPS (default: all), logs under $OUT.
#   tests    the CUDA backend's GoogleTest suite (moereg_cuda_tests)
#   cli      `moereg moe run --backend cuda|cpu` on every fixture (bench/cuda/cli_check.sh)
#   bench    bench/cuda/bench_moe.py (BENCH_ARGS, e.g. --tiles)
#   convert  bench/convert/device_compare.sh (LAYERS, default 5)
set -u
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
STEPS=${STEPS:-tests cli bench convert}
export PYTHONUNBUFFERED=1
export MOEREG_FIXTURES_DIR=$PWD/.carry/fixtures
export MOEREG_CUDA_BACKEND=$PWD/.carry/lib/moereg/backends/libmoereg_backend_cuda.so
# The cuBLAS path dlopens libcublas.so.13: PyTorch's wheel has one, the toolkit maybe another.
cublas_dir=$(python3 -c 'import glob,os,site
for s in site.getsitepackages():
    for p in glob.glob(os.path.join(s, "nvidia", "**", "libcublas.so.13"), recursive=True):
        print(os.path.dirname(p)); raise SystemExit' 2>/dev/null)
export LD_LIBRARY_PATH=${cublas_dir:+$cublas_dir:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
echo "cores $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"
for step in $STEPS; do
  t0=$(date +%s)
  echo "=== $step"
  case $step in
    tests) .carry/bin/moereg_cuda_tests ${GTEST_ARGS:-} > "$OUT/tests.log" 2>&1; rc=$?
           grep -E "^\[  (PASSED|FAILED) |FAILED|Failure" "$OUT/tests.log" | head -40; echo "tests exit $rc" ;;
    cli) bash bench/cuda/cli_check.sh 2>&1 | tee "$OUT/cli.log" ;;
    bench) python3 bench/cuda/bench_moe.py --lib "$MOEREG_CUDA_BACKEND" --out "$OUT" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
           tail -45 "$OUT/bench.log" ;;
    convert) bash bench/convert/device_compare.sh "${LAYERS:-5}" > "$OUT/convert.log" 2>&1; tail -25 "$OUT/convert.log" ;;
  esac
  echo "=== $step took $(( $(date +%s) - t0 )) s"
done
