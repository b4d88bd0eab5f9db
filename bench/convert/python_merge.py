# SPDX-License-Identifier: Apache-2.0
"""The way users fuse experts today without moereg: a safetensors + torch merge script.

Loads each shard of a per-expert (hf) Qwen3-MoE checkpoint, stacks gate/up/down per layer,
concatenates gate and up into transformers 5's gate_up_proj [E, 2I, H], and saves with
safetensors.torch.save_file. Usage: python_merge.py SRC OUT
"""
import json
import os
import re
import sys

import torch
from safetensors.torch import load_file, save_file

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
cfg = json.load(open(os.path.join(src, "config.json")))
E = cfg.get("num_experts") or cfg["num_local_experts"]
tensors = {}
for f in sorted(os.listdir(src)):
    if f.endswith(".safetensors"):
        tensors.update(load_file(os.path.join(src, f)))
pat = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight")
layers = sorted({int(m.group(1)) for k in tensors if (m := pat.match(k))})
result = {k: v for k, v in tensors.items() if not pat.match(k)}
for l in layers:
    p = f"model.layers.{l}.mlp.experts"
    gate = torch.stack([tensors[f"{p}.{e}.gate_proj.weight"] for e in range(E)])
    up = torch.stack([tensors[f"{p}.{e}.up_proj.weight"] for e in range(E)])
    result[f"{p}.gate_up_proj"] = torch.cat([gate, up], dim=1).contiguous()
    result[f"{p}.down_proj"] = torch.stack([tensors[f"{p}.{e}.down_proj.weight"] for e in range(E)]).contiguous()
save_file(result, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
