#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The reference `moereg moe bench` times beside its own backend, on the same weights.

Runs the per-expert loop of transformers' eager MoE path (for each expert hit: gate/up
linear, silu(gate) * up, down linear, scale by the routing weight, index_add into the
output) in bf16 with PyTorch, on the CPU or (--device cuda) the GPU, and one dense bf16
matmul of the same total FLOPs on the same device.
Weights and inputs are read from the safetensors files moereg wrote (parsed here with
struct/json, no safetensors package). Prints one JSON object on stdout; writes the
reference outputs to --outputs (safetensors, F32) so moereg can compare them.

Run with Debian's python3-torch: /usr/bin/python3 torch_reference.py --help
"""
import argparse
import json
import mmap
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"BF16": torch.bfloat16, "F32": torch.float32, "I64": torch.int64, "I32": torch.int32}


def load(path):
    """Tensors of a safetensors file, viewing a private (copy-on-write) map: no copy."""
    f = open(path, "rb")
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:  # the backend's own copies (F8 experts): not what PyTorch runs
            continue
        dt = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        count = (end - begin) // torch.tensor([], dtype=dt).element_size()
        t = torch.frombuffer(mm, dtype=dt, count=count, offset=8 + n + begin) if count else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"])
    return out


def save_f32(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        b = t.float().contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)


def moe_eager(x, ids, weights, w13, w2, shared, shared_gate):
    """transformers 5 eager experts loop (MoeExperts.forward), bf16 throughout."""
    num_experts = w13.shape[0]
    final = torch.zeros_like(x)
    with torch.no_grad():
        mask = F.one_hot(ids, num_classes=num_experts).permute(2, 1, 0)
        hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
        for e in hit:
            e = e[0]
            top_k_pos, token_idx = torch.where(mask[e])
            cur = x[token_idx]
            gate, up = F.linear(cur, w13[e]).chunk(2, dim=-1)
            cur = F.silu(gate) * up
            cur = F.linear(cur, w2[e])
            cur = cur * weights[token_idx, top_k_pos, None]
            final.index_add_(0, token_idx, cur.to(final.dtype))
        if shared is not None:
            gate, up = F.linear(x, shared[0]).chunk(2, dim=-1)
            s = F.linear(F.silu(gate) * up, shared[1])
            if shared_gate is not None:
                s = torch.sigmoid(F.linear(x, shared_gate)) * s
            final = final + s
    return final


def timed(fn, min_seconds, max_seconds=0.0, min_reps=3, max_reps=100, sync=lambda: None, first=None):
    """Median of warm runs: at least min_reps, or a single one when min_reps would not fit in
    max_seconds (0: no limit). `first`: the seconds of a warm-up run the caller already made.
    Returns (seconds, runs)."""
    if first is None:
        t0 = time.perf_counter()
        fn()  # warm-up
        sync()
        first = time.perf_counter() - t0
    if max_seconds > 0 and first * min_reps > max_seconds:
        min_reps = 1
    times = []
    while len(times) < min_reps or (sum(times) < min_seconds and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], len(times)


def matmul_rate(H, N, dev, sync):
    """FLOP/s of a small dense bf16 matmul: the yardstick for estimating a row's time."""
    a_mat = torch.randn(64, H).to(torch.bfloat16).to(dev)
    b_mat = (torch.randn(N, H) * 0.02).to(torch.bfloat16).to(dev)
    with torch.no_grad():
        seconds, _ = timed(lambda: F.linear(a_mat, b_mat), 0.05, sync=sync)
    return 2.0 * 64 * H * N / seconds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--outputs", required=True)
    p.add_argument("--tokens", required=True, help="comma-separated T values present in --inputs")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--max-seconds", type=float, default=0.0,
                   help="skip a row whose eager loop is estimated to take longer than this per run, and time "
                        "a single warm run where three would not fit (0: no limit)")
    a = p.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    w = load(a.weights)
    inp = load(a.inputs)
    w13, w2 = w["w13"].to(dev), w["w2"].to(dev)
    shared = (w["shared_w13"].to(dev), w["shared_w2"].to(dev)) if "shared_w13" in w else None
    shared_gate = w["shared_gate"].to(dev) if "shared_gate" in w else None
    E, two_i, H = w13.shape
    rows, outputs = [], {}
    # Estimated time of a run: its FLOPs at the best rate seen so far (a small dense matmul to
    # begin with). Debian's CPU build runs bf16 matmuls at ~1 GFLOP/s without AVX-512, where a
    # mixtral-sized T = 1024 layer would take a quarter of an hour per run.
    rate = matmul_rate(H, min(3 * (two_i // 2), 2048), dev, sync)
    for T in [int(t) for t in a.tokens.split(",")]:
        x, ids, wt = inp[f"x.{T}"].to(dev), inp[f"ids.{T}"].long().to(dev), inp[f"weights.{T}"].to(dev)
        flops = 2 * 3 * H * (two_i // 2) * ids.numel()
        if shared is not None:
            flops += 2 * 3 * H * shared[1].shape[1] * T
        estimate = flops / rate
        if a.max_seconds > 0 and estimate > a.max_seconds:
            print(f"torch_reference: T={T} skipped: about {estimate:.3g} s per run "
                  f"(at {rate / 1e9:.1f} GFLOP/s) > --max-seconds {a.max_seconds:g}", file=sys.stderr)
            rows.append({"tokens": T, "skipped": f"estimated {estimate:.3g} s per run at {rate / 1e9:.1f} GFLOP/s, "
                                                 f"over the {a.max_seconds:g} s limit"})
            continue
        print(f"torch_reference: T={T}, about {estimate:.3g} s per run", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        out = moe_eager(x, ids, wt, w13, w2, shared, shared_gate)  # the outputs, and the warm-up run
        sync()
        warm_up = time.perf_counter() - t0
        outputs[f"output.{T}"] = out.cpu()
        seconds, runs = timed(lambda: moe_eager(x, ids, wt, w13, w2, shared, shared_gate), a.min_seconds,
                              a.max_seconds, sync=sync, first=warm_up)
        rate = max(rate, flops / seconds)
        # One dense bf16 matmul [M, H] x [H, 3I] with M chosen for the same FLOPs.
        m = max(1, round(flops / (2 * H * 3 * (two_i // 2))))
        a_mat = torch.randn(m, H).to(torch.bfloat16).to(dev)
        b_mat = (torch.randn(3 * (two_i // 2), H) * 0.02).to(torch.bfloat16).to(dev)
        with torch.no_grad():
            dense, dense_runs = timed(lambda: F.linear(a_mat, b_mat), a.min_seconds, a.max_seconds, sync=sync)
        rows.append({"tokens": T, "seconds": seconds, "runs": runs, "dense_seconds": dense, "dense_runs": dense_runs,
                     "dense_gflops": 2.0 * m * H * 3 * (two_i // 2) / dense / 1e9})
    save_f32(a.outputs, outputs)
    print(json.dumps({"torch": torch.__version__ + ("" if dev.type == "cpu" else " on " + torch.cuda.get_device_name(dev)),
                      "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    sys.exit(main())
