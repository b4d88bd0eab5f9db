#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench_moe.py - one run, one GPU: moereg's CUDA backend (through its C ABI, via ctypes)
against torch._grouped_mm as transformers 5 uses it, transformers' eager per-expert loop,
and the roofline floor measured in the same run, for three real MoE layer shapes.

Usage (on the GPU machine): python3 bench/cuda/bench_moe.py --lib <libmoereg_backend_cuda.so> [--out DIR]
    [--reference bench/cuda/vllm_reference_h200.json]
`graph ms` is the same layer created with the backend option graphs=on (reading the same device
weights in place), timed on replays of its captured graph; `--reference` adds a column of
reference times given as JSON ({"label": ..., "ms": {shape: {T: ms}}}; moereg runs no code of the
reference's). Times are medians of repeated CUDA-event measurements on the default stream; the backend's
stream is a blocking stream, so the events bracket its work too. Weights and inputs are random
normal (never zeros); routing is top-k of random scores.
"""
import argparse
import ctypes as C
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- the C ABI

MAX_RANK = 8
DT_BF16, DT_F32, DT_I64 = 7, 8, 5
MEM_DEVICE, MEM_HOST = 1, 0


class View(C.Structure):
    _fields_ = [("data", C.c_void_p), ("dtype", C.c_int32), ("rank", C.c_int32),
                ("shape", C.c_int64 * MAX_RANK), ("strides", C.c_int64 * MAX_RANK),
                ("memory", C.c_int32), ("reserved", C.c_int32)]


class Weights(C.Structure):
    _fields_ = [("num_experts", C.c_int64), ("hidden", C.c_int64), ("intermediate", C.c_int64),
                ("w13", View), ("w2", View), ("w13_scale", View), ("w2_scale", View),
                ("scale_block", C.c_int64 * 2), ("shared_intermediate", C.c_int64),
                ("shared_w13", View), ("shared_w2", View), ("shared_gate", View),
                ("weight_quant", C.c_int32), ("quant_types", C.c_int32)]  # API 2


class Options(C.Structure):
    _fields_ = [("threads", C.c_int32), ("device", C.c_int32), ("reserved", C.c_int32 * 6)]


SINK_WRITE = C.CFUNCTYPE(None, C.c_void_p, C.c_void_p, C.c_size_t)


class Sink(C.Structure):
    _fields_ = [("context", C.c_void_p), ("write", SINK_WRITE)]


STATUS_CREATE = C.CFUNCTYPE(C.c_void_p, C.c_int32, C.c_char_p)
LOG = C.CFUNCTYPE(None, C.c_int32, C.c_char_p)


class HostApi(C.Structure):
    _fields_ = [("api_version", C.c_uint32), ("status_create", STATUS_CREATE), ("log", LOG)]


PV = C.POINTER(View)


class Api(C.Structure):
    _fields_ = [("api_version", C.c_uint32), ("name", C.c_char_p), ("version", C.c_char_p),
                ("probe", C.CFUNCTYPE(C.c_int32, C.c_char_p, C.c_size_t)),
                ("create", C.CFUNCTYPE(C.c_void_p, C.POINTER(Weights), C.c_void_p, C.POINTER(Options),
                                       C.POINTER(C.c_void_p))),
                ("forward", C.CFUNCTYPE(C.c_void_p, C.c_void_p, PV, PV, PV, PV)),
                ("destroy", C.CFUNCTYPE(None, C.c_void_p)),
                ("route", C.c_void_p), ("alloc", C.c_void_p), ("free", C.c_void_p), ("copy", C.c_void_p),
                ("synchronize", C.CFUNCTYPE(C.c_void_p, C.c_void_p)),
                ("describe", C.CFUNCTYPE(C.c_void_p, C.c_void_p, Sink)),
                ("get_extension", C.c_void_p),
                ("create_with_options", C.CFUNCTYPE(C.c_void_p, C.POINTER(Weights), C.c_void_p, C.POINTER(Options),
                                                    C.c_void_p, C.c_size_t, C.POINTER(C.c_void_p)))]


class Option(C.Structure):
    _fields_ = [("key", C.c_char_p), ("value", C.c_char_p)]


_statuses = {}


@STATUS_CREATE
def _status_create(code, msg):
    key = len(_statuses) + 1
    _statuses[key] = (code, msg.decode())
    return key


@LOG
def _log(level, msg):
    pass


def check(status):
    if status:
        code, msg = _statuses.pop(status)
        raise RuntimeError(f"moereg cuda backend: code {code}: {msg}")


def view(t, memory):
    v = View()
    v.data = t.data_ptr()
    v.dtype = {torch.bfloat16: DT_BF16, torch.float32: DT_F32, torch.int64: DT_I64}[t.dtype]
    v.rank = t.dim()
    for i in range(t.dim()):
        v.shape[i] = t.shape[i]
        v.strides[i] = t.stride(i)
    v.memory = memory
    return v


class Backend:
    def __init__(self, lib_path):
        self.lib = C.CDLL(lib_path)
        entry = self.lib.moereg_backend_entry
        entry.restype = C.POINTER(Api)
        entry.argtypes = [C.POINTER(HostApi)]
        self.host = HostApi(1, _status_create, _log)
        self.api = entry(C.byref(self.host)).contents
        reason = C.create_string_buffer(256)
        self.score = self.api.probe(reason, 256)
        self.reason = reason.value.decode()

    def create(self, w13, w2, sw13=None, sw2=None, options=None):
        """options: backend options as a dict ({"tiles": "m64"}), passed to create_with_options.
        CUDA tensors are read in place (borrowed), CPU tensors copied to the device."""
        w = Weights()
        E, I2, H = w13.shape
        mem = MEM_DEVICE if w13.is_cuda else MEM_HOST
        w.num_experts, w.hidden, w.intermediate = E, H, I2 // 2
        w.w13, w.w2 = view(w13, mem), view(w2, mem)
        if sw13 is not None:
            w.shared_intermediate = sw13.shape[0] // 2
            w.shared_w13, w.shared_w2 = view(sw13, mem), view(sw2, mem)
        h = C.c_void_p()
        if options:
            kv = (Option * len(options))(*[Option(k.encode(), v.encode()) for k, v in options.items()])
            check(self.api.create_with_options(C.byref(w), None, C.byref(Options()), C.cast(kv, C.c_void_p),
                                               len(options), C.byref(h)))
        else:
            check(self.api.create(C.byref(w), None, C.byref(Options()), C.byref(h)))
        return h

    def describe(self, h):
        chunks = []
        cb = SINK_WRITE(lambda ctx, data, n: chunks.append(C.string_at(data, n)))
        check(self.api.describe(h, Sink(None, cb)))
        return json.loads(b"".join(chunks).decode())

    def forward(self, h, xv, iv, wv, ov):
        check(self.api.forward(h, C.byref(xv), C.byref(iv), C.byref(wv), C.byref(ov)))


# ---------------------------------------------------------------- torch paths (as transformers 5 does them)

def shared_mlp(x, sw13, sw2):
    g, u = F.linear(x, sw13).chunk(2, dim=-1)
    return F.linear(F.silu(g) * u, sw2)


def grouped_mm_forward(x, ids, wts, w13, w2, sw13=None, sw2=None):
    T, K = ids.shape
    E = w13.shape[0]
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    xs = x[order // K]
    counts = torch.bincount(flat, minlength=E)
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    gu = torch._grouped_mm(xs, w13.transpose(-2, -1), offs=offs)
    g, u = gu.chunk(2, dim=-1)
    y = torch._grouped_mm(F.silu(g) * u, w2.transpose(-2, -1), offs=offs)
    y = y * wts.reshape(-1)[order].unsqueeze(-1).to(y.dtype)
    slots = torch.empty_like(y)
    slots[order] = y
    out = slots.view(T, K, -1).sum(dim=1)
    if sw13 is not None:
        out = out + shared_mlp(x, sw13, sw2)
    return out


def eager_forward(x, ids, wts, w13, w2, sw13=None, sw2=None):
    E = w13.shape[0]
    final = torch.zeros_like(x)
    with torch.no_grad():
        mask = F.one_hot(ids, num_classes=E).permute(2, 1, 0)
        hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit:
        e = e[0]
        pos, tok = torch.where(mask[e])
        cur = x[tok]
        g, u = F.linear(cur, w13[e]).chunk(2, dim=-1)
        h = F.linear(F.silu(g) * u, w2[e])
        h = h * wts[tok, pos, None]
        final.index_add_(0, tok, h.to(final.dtype))
    if sw13 is not None:
        final = final + shared_mlp(x, sw13, sw2)
    return final


# ---------------------------------------------------------------- timing

def time_ms(fn, min_ms=20.0, reps=9):
    """Median over `reps` of (event time of n back-to-back calls) / n."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    one = max(a.elapsed_time(b), 1e-3)
    n = max(1, min(200, int(min_ms / one)))
    samples = []
    for _ in range(reps):
        a.record()
        for _ in range(n):
            fn()
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b) / n)
    return statistics.median(samples), n


def measure_ceilings():
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")  # 1 GiB
    src.random_(0, 255)
    dst = torch.empty_like(src)
    ms, _ = time_ms(lambda: dst.copy_(src), min_ms=50)
    bw = 2 * src.numel() / (ms * 1e-3)  # read + write
    del src, dst
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    ms, _ = time_ms(lambda: a @ b, min_ms=100)
    tf = 2 * 8192 ** 3 / (ms * 1e-3)
    del a, b
    torch.cuda.empty_cache()
    return bw, tf


SHAPES = [
    # name, E, H, I, K, Is
    ("qwen3_30b_a3b", 128, 2048, 768, 8, 0),
    ("mixtral_8x7b", 8, 4096, 14336, 2, 0),
    ("deepseek_v3", 256, 7168, 2048, 8, 2048),
]
TOKENS = [1, 16, 128, 1024, 4096]


# Forced paths timed with --tiles: the three mma.sync tile shapes, cuBLAS grouped, per expert and padded batched.
TILES = ("m16", "m64", "m128", "cublas", "cublas_loop", "cublas_batched", "wgmma")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--shapes", default=",".join(s[0] for s in SHAPES))
    ap.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    ap.add_argument("--no-eager", action="store_true")
    ap.add_argument("--tiles", action="store_true", help="also time every forced tile shape")
    ap.add_argument("--forced", help="with --tiles: only these forced paths (comma-separated, e.g. wgmma)")
    ap.add_argument("--reference", help="JSON of reference times to print beside moereg's (e.g. vLLM fused_moe)")
    args = ap.parse_args()
    ref_label, ref_ms = None, {}
    if args.reference:
        with open(args.reference) as f:
            spec = json.load(f)
        ref_label, ref_ms = spec["label"], spec["ms"]
        print(f"reference column '{ref_label}': {spec.get('source', args.reference)}", flush=True)
    tiles = tuple(t for t in args.forced.split(",") if t) if args.forced else TILES
    unknown = [t for t in tiles if t not in TILES]
    if unknown:
        ap.error(f"--forced {','.join(unknown)}: not one of {','.join(TILES)}")
    torch.manual_seed(0)
    dev = torch.cuda.get_device_name(0)
    be = Backend(args.lib)
    print(f"device: {dev}; torch {torch.__version__}; backend probe score {be.score} ({be.reason})", flush=True)
    bw, tf = measure_ceilings()
    print(f"measured: device copy {bw / 1e12:.2f} TB/s (read+write), bf16 8192^3 matmul {tf / 1e12:.0f} TFLOP/s",
          flush=True)
    rows = []
    tokens = [int(t) for t in args.tokens.split(",")]
    for name, E, H, I, K, Is in SHAPES:
        if name not in args.shapes.split(","):
            continue
        t0 = time.time()
        w13 = (torch.randn(E, 2 * I, H, dtype=torch.bfloat16, device="cuda") * (H ** -0.5))
        w2 = (torch.randn(E, H, I, dtype=torch.bfloat16, device="cuda") * (I ** -0.5))
        sw13 = sw2 = None
        if Is:
            sw13 = torch.randn(2 * Is, H, dtype=torch.bfloat16, device="cuda") * (H ** -0.5)
            sw2 = torch.randn(H, Is, dtype=torch.bfloat16, device="cuda") * (Is ** -0.5)
        hw13, hw2 = w13.cpu(), w2.cpu()
        hs13 = sw13.cpu() if Is else None
        hs2 = sw2.cpu() if Is else None
        h = be.create(hw13, hw2, hs13, hs2)
        desc = be.describe(h)
        # The same layer with graphs=on, reading the weights torch holds on the device (no second copy).
        hg = be.create(w13, w2, sw13, sw2, {"graphs": "on"})
        # One more handle per forced tile shape (backend option tiles=...), for the tile table, each
        # reading torch's device weights too (copies of deepseek_v3's 22.6 GB would not fit).
        forced = {tl: be.create(w13, w2, sw13, sw2, {"tiles": tl}) for tl in tiles} if args.tiles else {}
        del hw13, hw2, hs13, hs2
        print(f"\n{name}: E={E} H={H} I={I} K={K} shared={Is}; backend load {desc['load_gbps']:.1f} GB/s "
              f"(pinned H2D measured {desc['h2d_gbps']:.1f} GB/s), {desc['bytes_on_device'] / 1e9:.2f} GB, "
              f"setup {time.time() - t0:.1f} s", flush=True)
        expert_bytes = 3 * H * I * 2
        for T in tokens:
            x = torch.randn(T, H, dtype=torch.bfloat16, device="cuda")
            scores = torch.rand(T, E, device="cuda")
            wts, ids = torch.topk(scores.softmax(-1), K, dim=-1)
            wts = (wts / wts.sum(-1, keepdim=True)).float().contiguous()
            ids = ids.contiguous()
            out = torch.empty(T, H, dtype=torch.float32, device="cuda")
            xv, iv, wv, ov = (view(x, MEM_DEVICE), view(ids, MEM_DEVICE), view(wts, MEM_DEVICE),
                              view(out, MEM_DEVICE))
            run_moereg = lambda: be.forward(h, xv, iv, wv, ov)
            hit = int(torch.unique(ids).numel())
            bytes_ = hit * expert_bytes + (3 * H * Is * 2 if Is else 0)
            flops = 2 * T * K * 3 * H * I + (2 * T * 3 * H * Is if Is else 0)
            floor = max(bytes_ / bw, flops / tf) * 1e3
            row = {"shape": name, "T": T, "experts_hit": hit, "floor_ms": floor}
            row["moereg_ms"], _ = time_ms(run_moereg)
            row["tiles"] = be.describe(h)["last_tiles"]
            row["graph_ms"], _ = time_ms(lambda: be.forward(hg, xv, iv, wv, ov))
            row["graph"] = be.describe(hg)["last_graph"]
            r_ms = ref_ms.get(name, {}).get(str(T))
            row["reference_ms"] = float(r_ms) if r_ms is not None else float("nan")
            for tl, fh in forced.items():
                row[f"moereg_{tl}_ms"], _ = time_ms(lambda: be.forward(fh, xv, iv, wv, ov))
            try:
                ref = grouped_mm_forward(x, ids, wts, w13, w2, sw13, sw2)
                # Each forced path's output against PyTorch's too: a fast path that computes
                # something else shows here (the worst relative L2 of the row).
                worst = 0.0
                for fh in forced.values():
                    be.forward(fh, xv, iv, wv, ov)
                    torch.cuda.synchronize()
                    worst = max(worst, float((out - ref.float()).norm() / ref.float().norm()))
                row["forced_worst_rel_l2"] = worst
                row["grouped_mm_ms"], _ = time_ms(lambda: grouped_mm_forward(x, ids, wts, w13, w2, sw13, sw2))
            except Exception as e:  # report, don't hide
                print(f"  grouped_mm failed: {e}", flush=True)
                ref = None
                row["grouped_mm_ms"] = float("nan")
            if not args.no_eager:
                row["eager_ms"], _ = time_ms(lambda: eager_forward(x, ids, wts, w13, w2, sw13, sw2), min_ms=5, reps=5)
                if ref is None:
                    ref = eager_forward(x, ids, wts, w13, w2, sw13, sw2)
            be.forward(h, xv, iv, wv, ov)
            torch.cuda.synchronize()
            if ref is not None:
                r = ref.float()
                row["rel_l2_vs_torch"] = float((out - r).norm() / r.norm())
            rows.append(row)
            print(f"  T={T:5d} hit={hit:3d} floor {floor:8.4f} ms | moereg {row['moereg_ms']:8.4f} ({row['tiles'][:10]}) | "
                  f"graph {row['graph_ms']:8.4f} ({row['graph'][:8]}) | "
                  + (f"{ref_label} {row['reference_ms']:8.4f} | " if ref_label else "") +
                  f"grouped_mm {row['grouped_mm_ms']:8.4f} | eager {row.get('eager_ms', float('nan')):9.4f} | "
                  f"relL2 {row.get('rel_l2_vs_torch', float('nan')):.2e}"
                  + ("".join(f" | {tl} {row[f'moereg_{tl}_ms']:.4f}" for tl in tiles) +
                     f" | forced worst relL2 {row.get('forced_worst_rel_l2', float('nan')):.2e}" if args.tiles else ""),
                  flush=True)
            del x, out, ids, wts
        be.api.destroy(h)
        be.api.destroy(hg)
        for fh in forced.values():
            be.api.destroy(fh)
        del w13, w2, sw13, sw2
        torch.cuda.empty_cache()

    rl = ref_label or "reference"
    lines = [f"| shape | T | path | floor ms | moereg ms | graph ms | {rl} ms | best / {rl} | best / floor | grouped_mm ms | eager ms | grouped_mm / moereg | rel L2 |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        best = min(r["moereg_ms"], r["graph_ms"])
        lines.append(f"| {r['shape']} | {r['T']} | {r['tiles']} | {r['floor_ms']:.4f} | {r['moereg_ms']:.4f} | {r['graph_ms']:.4f} | "
                     f"{r['reference_ms']:.3f} | {best / r['reference_ms']:.2f} | {best / r['floor_ms']:.2f} | {r['grouped_mm_ms']:.4f} | "
                     f"{r.get('eager_ms', float('nan')):.3f} | "
                     f"{r['grouped_mm_ms'] / r['moereg_ms']:.2f} | {r.get('rel_l2_vs_torch', float('nan')):.1e} |")
    if args.tiles:
        lines += ["", "| shape | T | " + " | ".join(tiles) + " | worst rel L2 |", "|---|---:|" + "---:|" * (len(tiles) + 1)]
        for r in rows:
            lines.append(f"| {r['shape']} | {r['T']} | " + " | ".join(f"{r[f'moereg_{tl}_ms']:.4f}" for tl in tiles) +
                         f" | {r.get('forced_worst_rel_l2', float('nan')):.1e} |")
    table = "\n".join(lines)
    print("\n" + f"device {dev}; copy {bw / 1e12:.2f} TB/s; bf16 matmul {tf / 1e12:.0f} TFLOP/s\n" + table, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_cuda.json"), "w") as f:
        json.dump({"device": dev, "torch": torch.__version__, "copy_Bps": bw, "matmul_flops": tf, "rows": rows}, f,
                  indent=1)
    with open(os.path.join(args.out, "bench_cuda.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
