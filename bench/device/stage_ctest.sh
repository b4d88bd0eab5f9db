#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# stage_ctest.sh [BUILD_DIR...] - what ctest needs to run a build's tests on another machine
# (the GPU host's 16 cores), into .carry/: the binaries, plugin and backend libraries, ctest's
# own files, the shared libraries they need, and the fixtures. Object files stay behind.
# STRIP=1 drops debug sections from the copies (an ASan build then fits the device's carry
# limit; ASan still names functions in its reports, from the symbol table).
# Then there: bash bench/device/repeat_ctest.sh   (carry: [".carry"])
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${MOEREG_FIXTURES_DIR:-$root/../shared/fixtures}
cd "$root"
rm -rf .carry && mkdir -p .carry/lib .carry/fixtures
for b in "${@:-build build-asan}"; do
  for d in $b; do
    [ -d "$d" ] || continue
    if [ "${STRIP:-0}" = 1 ]; then
      tmp=$(mktemp -d)
      tar -c --exclude='*.o' --exclude='*.a' --exclude='CMakeFiles' --exclude='Testing' "$d" | tar -x -C "$tmp"
      find "$tmp/$d" -type f \( -perm -u+x -o -name '*.so*' \) -exec sh -c 'file -b "$1" | grep -q ELF && objcopy --strip-debug "$1"' _ {} \;
      tar -c -C "$tmp" "$d" | xz -T0 -6 > ".carry/$d.tar.xz"
      rm -rf "$tmp"
    else
      tar -c --exclude='*.o' --exclude='*.a' --exclude='CMakeFiles' --exclude='Testing' "$d" | xz -T0 -6 > ".carry/$d.tar.xz"
    fi
    for lib in $(ldd "$d"/bin/moereg "$d"/bin/moereg_tests "$d"/lib/moereg/plugins/*/*.so 2>/dev/null | awk '/=>/{print $3}' | sort -u); do
      case "$(basename "$lib")" in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*) ;; *) cp -Ln "$lib" .carry/lib/ ;; esac
    done
  done
done
cp -r "$fixtures"/. .carry/fixtures/
chmod -R go-w .carry
du -sh .carry
