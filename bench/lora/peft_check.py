#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Loads adapters converted by moereg into PEFT and checks the logits (docs/lora.md).

    python3 bench/lora/peft_check.py ROOT              on the GPU machine (PEFT 0.21, transformers 5.17)
    python3 bench/lora/peft_check.py --self-test ROOT  anywhere: checks ROOT without torch
    python3 bench/lora/peft_check.py --make-distinct-up SRC DST   (used by prepare_peft_check.sh)

ROOT is what bench/lora/prepare_peft_check.sh made: per family the base model (hf/), the
fixture's logits.safetensors and adapters; manifest.json lists the checks. Each check loads
the base model in bf16 on CPU (as the fixtures were made), applies the adapter with
PeftModel.from_pretrained, runs input_ids and compares the logits with the reference: the
fixture's logits_adapter, or the logits of another adapter of the same manifest (for the
block-diagonal fusion, whose reference is the per-expert adapter it was made from). Pass:
argmax equal at every position and max |diff| <= 1e-2. Results go to stdout and, as JSON,
to ROOT/peft_check.json; the exit status is 1 when any check fails.
"""
import json
import os
import random
import shutil
import struct
import sys

TOLERANCE = 1e-2
DTYPES = {"F32": ("f", 4), "I64": ("q", 8), "BF16": (None, 2), "F16": ("e", 2)}


def read_safetensors(path):
    """name -> (dtype, shape, raw bytes), and the __metadata__."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], data[b:e])
    return out, meta


def write_safetensors(path, tensors, meta=None):
    """tensors: name -> (dtype, shape, raw bytes); sorted by name, padded like safetensors."""
    header, offset, blobs = {}, 0, []
    if meta is not None:
        header["__metadata__"] = meta
    for name in sorted(tensors):
        dt, shape, raw = tensors[name]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def f32_values(entry):
    dt, shape, raw = entry
    if dt != "F32":
        raise ValueError("expected F32, got %s" % dt)
    return list(struct.unpack("<%df" % (len(raw) // 4), raw))


def compare(reference, got, positions, vocab):
    """Flat float lists [positions * vocab]: (argmax equal everywhere, max |diff|)."""
    if len(reference) != len(got) or len(got) != positions * vocab:
        raise ValueError("logits of %d and %d values, expected %d" % (len(reference), len(got), positions * vocab))
    same_argmax = True
    for p in range(positions):
        r = reference[p * vocab:(p + 1) * vocab]
        g = got[p * vocab:(p + 1) * vocab]
        if max(range(vocab), key=r.__getitem__) != max(range(vocab), key=g.__getitem__):
            same_argmax = False
    return same_argmax, max(abs(a - b) for a, b in zip(reference, got))


def make_distinct_up(src, dst):
    """A per-expert adapter whose up_proj (mixtral w3) lora_A differ from gate's: seeded noise."""
    tensors, meta = read_safetensors(os.path.join(src, "adapter_model.safetensors"))
    rng = random.Random(5)
    changed = 0
    for name in sorted(tensors):
        if ".experts." in name and (".up_proj.lora_A" in name or ".w3.lora_A" in name):
            vals = [v + rng.gauss(0.0, 0.05) for v in f32_values(tensors[name])]
            tensors[name] = ("F32", tensors[name][1], struct.pack("<%df" % len(vals), *vals))
            changed += 1
    if not changed:
        raise SystemExit("%s: no up_proj / w3 lora_A tensors" % src)
    os.makedirs(dst, exist_ok=False)
    write_safetensors(os.path.join(dst, "adapter_model.safetensors"), tensors, meta)
    shutil.copy(os.path.join(src, "adapter_config.json"), os.path.join(dst, "adapter_config.json"))


def load_manifest(root):
    with open(os.path.join(root, "manifest.json")) as f:
        m = json.load(f)
    problems = []
    for c in m["checks"]:
        for need in (os.path.join(c["family"], "hf", "config.json"), os.path.join(c["family"], "logits.safetensors"),
                     os.path.join(c["adapter"], "adapter_config.json"), os.path.join(c["adapter"], "adapter_model.safetensors")):
            if not os.path.exists(os.path.join(root, need)):
                problems.append("%s: missing %s" % (c["adapter"], need))
        if c["reference"] != "logits_adapter" and not any(x["adapter"] == c["reference"] for x in m["checks"]) \
                and not os.path.exists(os.path.join(root, c["reference"], "adapter_model.safetensors")):
            problems.append("%s: reference %s is not an adapter" % (c["adapter"], c["reference"]))
    return m, problems


def self_test(root):
    m, problems = load_manifest(root)
    for c in m["checks"]:
        t, _ = read_safetensors(os.path.join(root, c["family"], "logits.safetensors"))
        for k in ("input_ids", "logits_base", "logits_adapter"):
            if k not in t:
                problems.append("%s/logits.safetensors: no %s" % (c["family"], k))
        ref = f32_values(t["logits_adapter"])
        positions, vocab = t["logits_adapter"][1][1], t["logits_adapter"][1][2]
        same, diff = compare(ref, ref, positions, vocab)
        assert same and diff == 0.0
        base = f32_values(t["logits_base"])
        same, diff = compare(ref, base, positions, vocab)
        if diff <= TOLERANCE:  # the adapters must visibly change the logits, or the check proves nothing
            problems.append("%s: logits_adapter within %g of logits_base" % (c["family"], TOLERANCE))
    for p in problems:
        print("self-test:", p)
    print("self-test: %d checks in %s, %s" % (len(m["checks"]), root, "ok" if not problems else "FAILED"))
    return 1 if problems else 0


def run(root):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    m, problems = load_manifest(root)
    if problems:
        for p in problems:
            print(p)
        return 1
    torch.manual_seed(0)
    cache = {}

    def logits_of(family, adapter):
        key = (family, adapter)
        if key not in cache:
            model = AutoModelForCausalLM.from_pretrained(os.path.join(root, family, "hf"), dtype=torch.bfloat16)
            model = PeftModel.from_pretrained(model, os.path.join(root, adapter))
            model.eval()
            t, _ = read_safetensors(os.path.join(root, family, "logits.safetensors"))
            ids = torch.tensor(struct.unpack("<%dq" % (len(t["input_ids"][2]) // 8), t["input_ids"][2])).view(*t["input_ids"][1])
            with torch.no_grad():
                cache[key] = model(input_ids=ids).logits.float().reshape(-1).tolist()
        return cache[key]

    results, failed = [], 0
    for c in m["checks"]:
        t, _ = read_safetensors(os.path.join(root, c["family"], "logits.safetensors"))
        positions, vocab = t["logits_adapter"][1][1], t["logits_adapter"][1][2]
        try:
            got = logits_of(c["family"], c["adapter"])
            ref = f32_values(t["logits_adapter"]) if c["reference"] == "logits_adapter" else logits_of(c["family"], c["reference"])
            same, diff = compare(ref, got, positions, vocab)
            base_diff = compare(f32_values(t["logits_base"]), got, positions, vocab)[1]
            ok = same and diff <= TOLERANCE
            r = {"adapter": c["adapter"], "reference": c["reference"], "argmax_equal": same, "max_abs_diff": diff,
                 "max_abs_diff_to_base": base_diff, "pass": ok}
        except Exception as e:  # a load failure is a result, not a crash of the whole run
            ok = False
            r = {"adapter": c["adapter"], "reference": c["reference"], "error": "%s: %s" % (type(e).__name__, e), "pass": False}
        failed += not ok
        results.append(r)
        print("%-4s %-40s vs %-26s %s" % ("ok" if ok else "FAIL", c["adapter"], c["reference"],
                                        r.get("error") or "argmax %s, max|diff| %.3g (to base %.3g)" % (
                                            "equal" if r["argmax_equal"] else "DIFFERS", r["max_abs_diff"], r["max_abs_diff_to_base"])))
    import peft
    import transformers
    summary = {"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
               "tolerance": TOLERANCE, "failed": failed, "results": results}
    out = os.environ.get("OUT") or root
    with open(os.path.join(out, "peft_check.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("%d of %d checks passed (peft %s, transformers %s)" % (len(results) - failed, len(results), peft.__version__,
                                                                  transformers.__version__))
    return 1 if failed else 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "--make-distinct-up":
        make_distinct_up(a[1], a[2])
    elif len(a) == 2 and a[0] == "--self-test":
        sys.exit(self_test(a[1]))
    elif len(a) == 1:
        sys.exit(run(a[0]))
    else:
        print(__doc__)
        sys.exit(2)
