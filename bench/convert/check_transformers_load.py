# SPDX-License-Identifier: Apache-2.0
"""Does transformers 5 load moereg's output? Loads the source (hf) and moereg's
transformers_v5 output with transformers and compares every parameter bit for bit.

Usage: check_transformers_load.py HF_DIR V5_DIR
"""
import sys

import torch
from transformers import AutoModelForCausalLM

a = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16, device_map="cpu").state_dict()
b = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.bfloat16, device_map="cpu").state_dict()
assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
bad = [k for k in a if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
print(f"transformers loads moereg's output: {len(a)} parameters, {len(bad)} differ")
sys.exit(1 if bad else 0)
