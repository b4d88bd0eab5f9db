# SPDX-License-Identifier: Apache-2.0
"""generate() tokens/s of a Qwen3-30B-A3B-shaped transformers model (a few layers, random
weights, bf16, on the GPU) with its experts on moereg (CUDA backend, parameters read in
place), on transformers' grouped_mm, and on eager, in one run (docs/python.md).

    PYTHONPATH=<build>/python python3 bench/python/generate_bench.py [--layers 4] [--new-tokens 64]

Prints a table: batch, implementation, seconds, tokens/s, ratio to grouped_mm; and checks
first that the three implementations produce the same greedy tokens for a short prompt."""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, Qwen3MoeConfig

import moereg.transformers as mt


def model_of(layers: int) -> torch.nn.Module:
    # Qwen3-30B-A3B's config.json, with fewer layers and a random initialisation.
    cfg = Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                         num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                         num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, max_position_embeddings=40960,
                         rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).cuda().eval()
    for p in m.parameters():  # initializer_range 0.02 everywhere: a plausible spread of routing
        torch.nn.init.normal_(p, std=0.02)
    return m


def timed_generate(model, prompt, new_tokens: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=0)
    torch.cuda.synchronize()
    assert out.shape[1] == prompt.shape[1] + new_tokens
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    name = mt.register("moereg", backend="cuda")
    model = model_of(a.layers)
    impls = [name, "grouped_mm", "eager"]
    g = torch.Generator().manual_seed(1)

    # Same greedy tokens (bf16 sums in another order may flip a near-tie; report, do not hide).
    prompt = torch.randint(0, 151936, (2, a.prompt), generator=g).cuda()
    outs = {}
    for impl in impls:
        model.set_experts_implementation(impl)
        with torch.no_grad():
            outs[impl] = model.generate(prompt, max_new_tokens=16, do_sample=False, pad_token_id=0)
    for impl in impls[1:]:
        same = (outs[impl] == outs[name]).float().mean().item()
        print(f"greedy tokens equal to {name}: {impl} {same * 100:.1f} %")
    used = [m._moereg_backend[1] for m in model.modules() if hasattr(m, "_moereg_backend")]
    assert used and all(not isinstance(b, str) and b.name == "cuda" for b in used), "experts did not run on moereg's cuda backend"
    print("moereg backend:", json.loads(used[0].describe()).get("weights"))

    rows = []
    for batch in [int(b) for b in a.batches.split(",")]:
        prompt = torch.randint(0, 151936, (batch, a.prompt), generator=g).cuda()
        for impl in impls:
            model.set_experts_implementation(impl)
            timed_generate(model, prompt, 4)  # warm-up: workspaces, cuBLAS handles
            times = sorted(timed_generate(model, prompt, a.new_tokens) for _ in range(a.repeats))
            s = times[len(times) // 2]
            rows.append(dict(batch=batch, impl=impl, seconds=s, tokens_per_s=batch * a.new_tokens / s))
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {a.layers} layers, prompt {a.prompt}, "
          f"{a.new_tokens} new tokens, median of {a.repeats}")
    print(f"{'batch':>5} {'experts':>12} {'seconds':>9} {'tokens/s':>10} {'vs grouped_mm':>14}")
    for r in rows:
        ref = next(x for x in rows if x["batch"] == r["batch"] and x["impl"] == "grouped_mm")
        print(f"{r['batch']:>5} {r['impl']:>12} {r['seconds']:>9.3f} {r['tokens_per_s']:>10.1f} "
              f"{ref['seconds'] / r['seconds']:>13.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
