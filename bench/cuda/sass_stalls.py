#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""sass_stalls.py CSV [N] - where a kernel's warps were sampled, from Nsight Compute's
`--page source --csv --print-source sass` output (ncu_f8_gemm.sh writes it as
ncu_<label>_sass.csv): the share of all warp samples by opcode and by stall reason, then the
N SASS instructions (default 15) sampled most, with how often each executed. Where the warps
wait is where the time goes. Kernels profiled more than once (e.g. the two GEMMs of one
launch site) are pooled, an instruction's samples summed over them."""
import collections
import csv
import sys


def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return 0.0


def main():
    path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15
    # ncu prints its own lines before the table; the table's lines are quoted CSV: per kernel a
    # "Kernel Name" line, the header, then one line per instruction.
    rows = list(csv.reader(line for line in open(path, errors="replace") if line.startswith('"')))
    heads = [r for r in rows if "Address" in r and "Source" in r]
    if not heads:
        sys.exit(f"{path}: no table with Address and Source columns (did ncu write the source page?)")
    head = heads[0]
    if "Warp Stall Sampling (All Samples)" not in head:
        sys.exit(f"{path}: no Warp Stall Sampling (All Samples) column")
    addr, src = head.index("Address"), head.index("Source")
    samples, execd = head.index("Warp Stall Sampling (All Samples)"), head.index("Instructions Executed")
    reasons = [(i, h[len("stall_"):]) for i, h in enumerate(head) if h.startswith("stall_") and "Not Issued" not in h]

    per_instruction = collections.defaultdict(lambda: [0.0, 0.0])  # (address, source) -> samples, executed
    by_opcode, by_reason = collections.Counter(), collections.Counter()
    for r in rows:
        if r is head or r == head or r[0] == "Kernel Name" or len(r) < len(head):
            continue
        w = num(r[samples])
        entry = per_instruction[(r[addr], " ".join(r[src].split()))]
        entry[0] += w
        entry[1] += num(r[execd])
        words = r[src].split()
        words = words[1:] if words and words[0].startswith("@") else words  # the predicate
        if words:
            by_opcode[words[0].split(".")[0]] += w
        for i, name in reasons:
            by_reason[name] += num(r[i])

    total = sum(w for w, _ in per_instruction.values()) or 1.0
    stalls = sum(by_reason.values()) or 1.0
    print(f"{path}: {len(per_instruction)} instructions, {total:.0f} warp samples")
    print("  by opcode: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in by_opcode.most_common(12)))
    print("  by reason: " + ", ".join(f"{k} {100 * v / stalls:.1f}%" for k, v in by_reason.most_common(10)))
    for (_, text), (w, ex) in sorted(per_instruction.items(), key=lambda kv: -kv[1][0])[:n]:
        print(f"  {100 * w / total:5.1f}%  {text[:90]}  x{ex:.0f}")


if __name__ == "__main__":
    main()
