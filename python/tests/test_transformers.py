# SPDX-License-Identifier: Apache-2.0
"""moereg with transformers 5 and torch: iter_tensors gives the parameters from_pretrained
gives, and moereg's experts implementation gives transformers' logits. Skipped where
transformers 5 or torch is missing (CI); run on the GPU machine (docs/python.md)."""
import json
import os
import unittest

import numpy as np

import moereg
from support import FAMILIES, fixture, read_safetensors

try:
    import torch
    import transformers
    HAVE = int(transformers.__version__.split(".")[0]) >= 5
except ImportError:
    HAVE = False


@unittest.skipUnless(HAVE, "needs torch and transformers 5")
class WithTransformers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import moereg.transformers as mt
        cls.name = mt.register("moereg_test", backend="cpu")

    def load(self, family, experts="grouped_mm"):
        # The class config.json names (Qwen3-VL-MoE and Qwen3.5-MoE checkpoints are the
        # vision-language model, whose keys the files hold; AutoModelForCausalLM would refuse
        # the first and build the text model alone for the second).
        path = fixture(family, "hf")
        cls = getattr(transformers, transformers.AutoConfig.from_pretrained(path).architectures[0])
        return cls.from_pretrained(path, dtype=torch.bfloat16, experts_implementation=experts).eval()

    def assertMatchesLogits(self, got, want, family):
        # Within bf16 tolerance of the largest logit, and the same argmax wherever transformers'
        # own top two logits are further apart than that difference: the fixtures are tiny
        # random models whose positions can hold near-ties that any change of summation order
        # (grouped_mm against eager included) may flip.
        diff = float((got - want).abs().max())
        self.assertLessEqual(diff, 2e-2 * float(want.abs().max()), family)
        top2 = want.topk(2, dim=-1).values
        decided = (top2[..., 0] - top2[..., 1]) > 2 * diff
        print(f"{family}: max |diff| {diff:.3e}, max |logit| {float(want.abs().max()):.3e}, "
              f"{int(decided.sum())} of {decided.numel()} positions decided, "
              f"argmax equal at {int((got.argmax(-1) == want.argmax(-1)).sum())}", flush=True)
        self.assertGreaterEqual(float(decided.float().mean()), 0.5, f"{family}: too few decided positions to compare")
        self.assertTrue(torch.equal(got.argmax(-1)[decided], want.argmax(-1)[decided]), family)

    def test_iter_tensors_gives_the_parameters_from_pretrained_gives(self):
        for family in FAMILIES:
            with self.subTest(family=family):
                model = self.load(family)
                state = dict(moereg.iter_tensors(fixture(family, "hf"), "transformers_v5", framework="pt"))
                theirs = model.state_dict()
                missing = [k for k in theirs if k not in state]
                self.assertFalse(missing, missing[:5])
                for k, v in theirs.items():
                    self.assertEqual(v.shape, state[k].shape, k)
                    self.assertTrue(torch.equal(v.to(state[k].dtype), state[k]), k)
                model.load_state_dict(state, strict=False)

    def test_moereg_experts_give_transformers_logits(self):
        for family in FAMILIES:
            with self.subTest(family=family):
                ids = torch.tensor(np.array(moereg.open(fixture(family, "logits.safetensors"), identify=False)
                                            .tensor("input_ids")))
                model = self.load(family)
                with torch.no_grad():
                    want = model(ids).logits.float()
                    model.set_experts_implementation(self.name)
                    got = model(ids).logits.float()
                self.assertMatchesLogits(got, want, family)
                used = [m for m in model.modules() if hasattr(m, "_moereg_backend")]
                self.assertTrue(used, "no experts module ran on moereg")

    @unittest.skipUnless(HAVE and torch.cuda.is_available(), "needs a CUDA device")
    def test_cuda_models_run_on_the_cuda_backend_with_their_parameters_in_place(self):
        import moereg.transformers as mt
        name = mt.register("moereg_cuda_test", backend="cuda")
        for family in FAMILIES:
            with self.subTest(family=family):
                ids = torch.tensor(np.array(moereg.open(fixture(family, "logits.safetensors"), identify=False)
                                            .tensor("input_ids"))).cuda()
                model = self.load(family).cuda()
                with torch.no_grad():
                    want = model(ids).logits.float()
                    model.set_experts_implementation(name)
                    before = torch.cuda.memory_allocated()
                    got = model(ids).logits.float()
                self.assertMatchesLogits(got, want, family)
                used = [m._moereg_backend[1] for m in model.modules() if hasattr(m, "_moereg_backend")]
                self.assertTrue(used, "no experts module ran on moereg")
                for b in used:
                    self.assertNotIsInstance(b, str, b)
                    self.assertEqual(b.name, "cuda")
                    d = json.loads(b.describe())
                    self.assertTrue(d["weights"].startswith("borrowed"), d)
                    self.assertEqual(d["bytes_on_device"], 0, d)
                # No copy of the experts made through torch either (contiguous(), casts).
                experts = sum(m.gate_up_proj.numel() + m.down_proj.numel() for m in model.modules()
                              if hasattr(m, "_moereg_backend")) * 2
                self.assertLess(torch.cuda.memory_allocated() - before, experts)


if __name__ == "__main__":
    unittest.main()
