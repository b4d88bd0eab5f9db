#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_mpi.sh [LAYERS] - on the 16-core GPU host, with .carry/ from stage.sh (or
# stage_python.sh) plus stage_mpi.sh: an 8-layer Qwen3-30B-A3B-shaped checkpoint converted
# hf -> transformers_v5 by one threaded process and by `mpirun -np 1, 2, 4` (threads split
# evenly), and `--ep 4` by one process and by 4 ranks, in one run, page cache warm, `cp -r`
# as the reference; every MPI output verified against the single process's (docs/mpi.md).
set -uo pipefail
layers=${1:-8}
here=$(pwd)
W=${TMPDIR:-/tmp}/moereg-mpi
rm -rf "$W"; mkdir -p "$W"
if [ -d /usr/lib/x86_64-linux-gnu/openmpi ]; then
  # The machine's own Open MPI (4.1 on the GPU host, the same library ABI as Debian's): its
  # mpirun with its own libraries, so none of the carried MPI stack may shadow them (a
  # carried libpmix older than its components' fails with an undefined PMIx symbol).
  mkdir -p "$W/lib"
  for f in .carry/lib/*; do
    case "$(basename "$f")" in
      libmpi*|libopen-*|libpmix*|libhwloc*|libevent*|libuc[mpst]*|libfabric*|libpsm*|libibverbs*|librdmacm*|libnl-*|libefa*|libmunge*|libnuma*|libudev*) ;;
      *) ln -s "$here/$f" "$W/lib/" ;;
    esac
  done
  export LD_LIBRARY_PATH=$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "Open MPI: the machine's ($(mpirun.openmpi --version 2>/dev/null | head -1))"
elif [ -f .carry/openmpi.tar.xz ]; then
  tar -xJf .carry/openmpi.tar.xz -C /
  export LD_LIBRARY_PATH=$here/.carry/lib:/usr/lib/x86_64-linux-gnu/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "Open MPI: Debian's, carried"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mca_base_component_show_load_errors=0
# One host: shared memory without the kernel's cross-memory attach (absent in some sandboxes).
mpi="mpirun.openmpi --oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none -x LD_LIBRARY_PATH"
M=$here/.carry/bin/moereg
cores=$(nproc); echo "cores $cores; $(grep -m1 'model name' /proc/cpuinfo)"; free -g | head -2
$M synth "$W/hf" --preset qwen3_30b_a3b --layers "$layers" --log-level warn || exit 1
bytes=$(du -sb "$W/hf" | cut -f1); echo "checkpoint: $bytes bytes in $(ls "$W"/hf/*.safetensors | wc -l) shards"
$mpi -np 2 "$M" --version >/dev/null 2>"$W/mpi_check.log" || { echo "mpirun does not start here:"; tail -5 "$W/mpi_check.log"; exit 1; }
warm() { cat "$W"/hf/*.safetensors > /dev/null; }
run() {  # name, then the command; prints name, seconds, GB/s of the checkpoint's bytes
  local name=$1; shift; rm -rf "$W/out"; sync; warm
  local t0=$(date +%s.%N); "$@" > "$W/$name.log" 2>&1; local rc=$?; local t1=$(date +%s.%N)
  python3 -c "import sys; s=$t1-$t0; print(f'{sys.argv[1]:<22} {s:7.2f} s {int(sys.argv[2])/s/1e9:6.2f} GB/s  rc $rc')" "$name" "$bytes"
}
{
for round in $(seq 1 "${ROUNDS:-2}"); do
  run "cp -r" cp -r "$W/hf" "$W/out"
  run "1 process, $cores thr" "$M" convert "$W/hf" "$W/out" --to transformers_v5
  [ $round = 1 ] && { rm -rf "$W/ref"; mv "$W/out" "$W/ref"; }
  for n in 1 2 4; do
    run "np $n x $((cores / n)) thr" $mpi -np $n "$M" convert "$W/hf" "$W/out" --to transformers_v5 --threads $((cores / n))
    [ $round = 1 ] && { "$M" verify "$W/ref" "$W/out" --log-level warn >/dev/null && echo "  np $n output == 1 process output" || echo "  np $n output DIFFERS"; }
  done
  run "--ep 4, 1 process" "$M" convert "$W/hf" "$W/out" --to transformers_v5 --ep 4
  run "--ep 4, np 4" $mpi -np 4 "$M" convert "$W/hf" "$W/out" --to transformers_v5 --ep 4 --threads $((cores / 4))
done
} 2>&1 | tee "${OUT:-/tmp}/mpi_bench.txt"
df -hT "$W" | tail -1
rm -rf "$W"
