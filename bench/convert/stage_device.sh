#!/usr/bin/env bash
# Copies the built moereg binary, its plugins and the shared libraries it needs into
# .carry/ (git-ignored), for bench/convert/device_compare.sh on the device machine.
set -euo pipefail
build=${1:-build}
rm -rf .carry && mkdir -p .carry/bin .carry/lib
cp "$build/bin/moereg" .carry/bin/
cp -r "$build/lib/moereg" .carry/lib/
rm -f .carry/lib/moereg/backends/libmoereg_backend_cuda.so
for lib in $(ldd "$build/bin/moereg" .carry/lib/moereg/plugins/*/*.so | awk '/=>/{print $3}' | sort -u); do
  case "$(basename "$lib")" in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*) ;; *) cp -L "$lib" .carry/lib/ ;; esac
done
chmod -R go-w .carry
du -sh .carry
