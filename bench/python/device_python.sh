#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_python.sh - on the GPU machine (Python 3.12, torch, transformers 5, no Boost there),
# with .carry/ from bench/python/stage_python.sh: builds the moereg module for that Python
# against the carried libmoereg.so (the bindings need only moereg's app headers and pybind11),
# then runs python/tests/test_transformers.py (CPU and CUDA models), the CUDA backend's
# device-weight tests, and bench/python/generate_bench.py. Logs under $OUT.
set -u
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
here=$PWD
. bench/device/carry_env.sh
export MOEREG_BINARY=$here/.carry/bin/moereg
python3 -c 'import sys, torch, transformers; print(sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())'

pkg=/tmp/moereg_py/moereg; mkdir -p "$pkg" /tmp/moereg_py/obj
cp python/moereg/*.py python/moereg/*.pyi python/moereg/py.typed "$pkg/"
ext=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
flags="-std=c++20 -O1 -fPIC -fvisibility=hidden -DNDEBUG -Iapp/include -Icore/include $(python3 -m pybind11 --includes)"
t0=$(date +%s)
ls python/src/*.cpp | xargs -P "$(nproc)" -I{} sh -c "c++ $flags -c {} -o /tmp/moereg_py/obj/\$(basename {} .cpp).o" || { echo "module build failed"; exit 1; }
c++ -shared -o "$pkg/_moereg$ext" /tmp/moereg_py/obj/*.o -L.carry/lib -lmoereg -Wl,-rpath,"$here/.carry/lib" || exit 1
echo "module built in $(( $(date +%s) - t0 )) s: $pkg/_moereg$ext"
export PYTHONPATH=/tmp/moereg_py
python3 -c 'import moereg; print("import moereg ok", moereg.__file__)' || exit 1

echo "=== CUDA backend: device-resident weights"
.carry/bin/moereg_cuda_tests --gtest_filter='CudaDeviceWeights.*:CudaErrors.*:CudaRandom.OddTokenCountsAndSizes' > "$OUT/cuda_tests.log" 2>&1
grep -E "^\[  (PASSED|FAILED) |Failure|FAILED" "$OUT/cuda_tests.log" | head -20
echo "=== python/tests/test_transformers.py"
(cd python/tests && timeout 400 python3 -m unittest -v test_transformers) > "$OUT/test_transformers.log" 2>&1
echo "rc $?"; tail -25 "$OUT/test_transformers.log"
if [ "${BENCH:-1}" = 1 ]; then
  echo "=== generate() benchmark"
  timeout "${BENCH_LIMIT:-300}" python3 bench/python/generate_bench.py --json "$OUT/generate.json" ${BENCH_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/generate.log" | tail -14
fi
