# SPDX-License-Identifier: Apache-2.0
"""The other way users do it: let transformers 5 load the per-expert checkpoint (it fuses
the experts on load) and write its in-memory parameters (transformers_v5 layout).

Usage: transformers_save.py SRC OUT
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16, device_map="cpu")
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
