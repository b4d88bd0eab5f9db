#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""ab_decode.py - A/B of CUDA backend builds and options on the same weights, inputs and GPU,
alternated round by round, for the sizes where launch overheads and SM fill matter (decode).

Usage (on the GPU machine):
    python3 bench/cuda/ab_decode.py --lib new=.carry/lib/moereg/backends/libmoereg_backend_cuda.so \
        --lib old=.carry/old/libmoereg_backend_cuda.so \
        --config old --config old:graphs=on --config new --config new:graphs=on --config new:graphs=on,pdl=off
A config is LIB[:key=value,...] (backend options). Each shape's weights are made once on the
device and every config reads them in place. Prints, per shape and T, each config's median ms
(bench_moe.py's timing) and its ratio to the floor (bytes of the experts hit, shared expert
included, over the device copy bandwidth measured in the same run), and each config's output
against the first config's (max |diff| / max |first|).
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_moe import MEM_DEVICE, SHAPES, Backend, measure_ceilings, time_ms, view  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", action="append", required=True, help="NAME=PATH of a libmoereg_backend_cuda.so")
    ap.add_argument("--config", action="append", required=True, help="LIB[:key=value,...]")
    ap.add_argument("--shapes", default=",".join(s[0] for s in SHAPES))
    ap.add_argument("--tokens", default="1,4,16")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    libs = {}
    for spec in args.lib:
        name, path = spec.split("=", 1)
        libs[name] = Backend(path)
    configs = []
    for spec in args.config:
        lib, _, opts = spec.partition(":")
        options = dict(kv.split("=", 1) for kv in opts.split(",") if kv)
        configs.append((spec, libs[lib], options))
    torch.manual_seed(0)
    dev = torch.cuda.get_device_name(0)
    bw, _ = measure_ceilings()
    print(f"device: {dev}; device copy {bw / 1e12:.2f} TB/s; rounds {args.rounds}", flush=True)
    lines = ["| shape | T | floor ms | " + " | ".join(c[0] for c in configs) + " |",
             "|---|---:|---:|" + "---:|" * len(configs)]
    for name, E, H, I, K, Is in SHAPES:
        if name not in args.shapes.split(","):
            continue
        w13 = torch.randn(E, 2 * I, H, dtype=torch.bfloat16, device="cuda") * (H ** -0.5)
        w2 = torch.randn(E, H, I, dtype=torch.bfloat16, device="cuda") * (I ** -0.5)
        sw13 = sw2 = None
        if Is:
            sw13 = torch.randn(2 * Is, H, dtype=torch.bfloat16, device="cuda") * (H ** -0.5)
            sw2 = torch.randn(H, Is, dtype=torch.bfloat16, device="cuda") * (Is ** -0.5)
        handles = [(spec, be, be.create(w13, w2, sw13, sw2, opts or None)) for spec, be, opts in configs]
        for T in (int(t) for t in args.tokens.split(",")):
            x = torch.randn(T, H, dtype=torch.bfloat16, device="cuda")
            wts, ids = torch.topk(torch.rand(T, E, device="cuda").softmax(-1), K, dim=-1)
            wts = (wts / wts.sum(-1, keepdim=True)).float().contiguous()
            ids = ids.contiguous()
            outs = [torch.empty(T, H, dtype=torch.float32, device="cuda") for _ in handles]
            xv, iv, wv = view(x, MEM_DEVICE), view(ids, MEM_DEVICE), view(wts, MEM_DEVICE)
            ovs = [view(o, MEM_DEVICE) for o in outs]
            hit = int(torch.unique(ids).numel())
            floor = (hit * 3 * H * I * 2 + 3 * H * Is * 2) / bw * 1e3
            samples = [[] for _ in handles]
            for _ in range(args.rounds):
                for i, (_, be, h) in enumerate(handles):
                    ms, _ = time_ms(lambda: be.forward(h, xv, iv, wv, ovs[i]), reps=5)
                    samples[i].append(ms)
            torch.cuda.synchronize()
            first = outs[0]
            diffs = [float((o - first).abs().max() / first.abs().max()) for o in outs]
            cells = []
            for i, (spec, be, h) in enumerate(handles):
                ms = statistics.median(samples[i])
                cells.append(f"{ms:.4f} ({ms / floor:.2f}x)")
                print(f"{name} T={T} hit={hit} floor {floor:.4f} | {spec}: {ms:.4f} ms ({ms / floor:.2f}x floor; rounds "
                      f"{', '.join(f'{s:.4f}' for s in samples[i])}) diff {diffs[i]:.1e} path {be.describe(h)['last_tiles'][:40]}",
                      flush=True)
            lines.append(f"| {name} | {T} | {floor:.4f} | " + " | ".join(cells) + " |")
        for _, be, h in handles:
            be.api.destroy(h)
        del w13, w2, sw13, sw2
        torch.cuda.empty_cache()
    print(f"\nms (x floor), median of {args.rounds} alternated rounds; {dev}, copy {bw / 1e12:.2f} TB/s\n" +
          "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
