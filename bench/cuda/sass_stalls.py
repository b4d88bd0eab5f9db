#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""sass_stalls.py CSV [N] - the N SASS instructions (default 15) where a kernel's warps were
sampled most often, from Nsight Compute's `--page source --csv --print-source sass` output
(ncu_f8_gemm.sh writes it as ncu_<label>_sass.csv): the share of all warp samples, the
instruction, and how often it executed. Where the warps wait is where the time goes."""
import csv
import sys


def main():
    path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15
    # ncu prints its own lines before the table; the table's lines are quoted CSV.
    rows = list(csv.reader(line for line in open(path, errors="replace") if line.startswith('"')))
    if not rows:
        sys.exit(f"{path}: no CSV table (did ncu write the source page?)")
    # One "Kernel Name" line, then the header, then the instructions, per kernel profiled: the
    # kernels' rows are pooled (a kernel profiled twice, e.g. two GEMMs of one launch site).
    heads = [i for i, r in enumerate(rows) if "Source" in r and "Address" in r]
    if not heads:
        sys.exit(f"{path}: no header with Address and Source")
    head = rows[heads[0]]
    rows = [head] + [r for i, r in enumerate(rows) if i not in heads and r and r[0] != "Kernel Name"]

    def col(*words):
        for i, h in enumerate(head):
            if all(w.lower() in h.lower() for w in words):
                return i
        return None

    def num(s):
        try:
            return float(s.replace(",", ""))
        except ValueError:
            return 0.0

    src, samples, execd = col("source"), col("warp stall sampling (all"), col("instructions executed")
    if src is None or samples is None:
        sys.exit(f"{path}: no Source / Warp Stall Sampling (All Samples) column in {head}")

    # The same instruction (address) in several profiled kernels: its samples and counts summed.
    addr = col("address")
    merged = {}
    for r in rows[1:]:
        if len(r) <= max(src, samples):
            continue
        key = (r[addr] if addr is not None else "", r[src])
        if key in merged:
            m = merged[key]
            m[samples] = str(num(m[samples]) + num(r[samples]))
            if execd is not None and execd < len(r):
                m[execd] = str(num(m[execd]) + num(r[execd]))
        else:
            merged[key] = list(r)
    body = list(merged.values())
    total = sum(num(r[samples]) for r in body) or 1.0
    print(f"{path}: {len(body)} instructions, {total:.0f} warp samples")
    for r in sorted(body, key=lambda r: -num(r[samples]))[:n]:
        ex = f"  x{num(r[execd]):.0f}" if execd is not None and execd < len(r) else ""
        print(f"  {100 * num(r[samples]) / total:5.1f}%  {' '.join(r[src].split())[:90]}{ex}")


if __name__ == "__main__":
    main()
