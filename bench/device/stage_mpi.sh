#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# stage_mpi.sh - adds Open MPI's run time (Debian's, the one moereg links) to .carry/ for a
# machine without it (the GPU host): .carry/openmpi.tar.xz holds mpirun, orted, the libraries
# and components at their Debian paths (unpacked under / there only where those paths are
# absent), and .carry/lib the libraries they need. Run after stage.sh or stage_python.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[ -d .carry/lib ] || { echo "run bench/device/stage.sh first" >&2; exit 1; }
ompi=/usr/lib/x86_64-linux-gnu/openmpi
files=(/usr/bin/orterun /usr/bin/mpirun.openmpi /usr/bin/orted "$ompi" /usr/share/openmpi /etc/openmpi)
tar -c --exclude='*java*' --exclude='*fortran*' --exclude='*mpifh*' --exclude='*usempi*' "${files[@]}" 2>/dev/null | xz -T0 -6 > .carry/openmpi.tar.xz
for lib in $(ldd /usr/bin/orted "$ompi"/lib/*.so "$ompi"/lib/openmpi3/*.so 2>/dev/null | awk '/=>/{print $3}' | sort -u); do
  case "$(basename "$lib")" in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*|libmpi*|libopen-*|libmca_*|liboshmem*) ;;
    *) cp -Ln "$lib" .carry/lib/ 2>/dev/null || true ;; esac
done
cp -Ln "$ompi"/lib/libmpi.so.40 "$ompi"/lib/libopen-pal.so.40 "$ompi"/lib/libopen-rte.so.40 .carry/lib/ 2>/dev/null || true
du -sh .carry .carry/openmpi.tar.xz
