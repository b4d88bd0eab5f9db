# SPDX-License-Identifier: Apache-2.0
"""moereg.moe_run(): the MoE block of a fixture on numpy input gives what `moereg moe run`
writes, and transformers' output within the fixtures' float32 bound."""
import json
import os
import re
import tempfile
import unittest

import numpy as np

import moereg
from support import FAMILIES, fixture, run_moereg


def block_layer(family):
    with open(fixture(family, "fixture.json")) as f:
        return int(re.search(r"layers\.(\d+)\.", json.load(f)["moe_block"]).group(1))


class MoeRun(unittest.TestCase):
    def test_equals_the_command_line_and_the_reference(self):
        for family in FAMILIES:
            with self.subTest(family=family), tempfile.TemporaryDirectory() as d:
                ref = moereg.open(fixture(family, "moe_block.safetensors"), identify=False)
                x = np.array(ref.tensor("input"))
                layer = block_layer(family)
                r = moereg.moe_run(fixture(family, "hf"), layer, x, backend="cpu", threads=1)
                self.assertEqual(r.backend, "cpu")
                self.assertEqual(r.output.shape, x.shape)
                out = os.path.join(d, "out.safetensors")
                cli = run_moereg("moe", "run", fixture(family, "hf"), "--layer", str(layer), "--input",
                                 fixture(family, "moe_block.safetensors"), "--output", out, "--backend", "cpu",
                                 "--threads", "1")
                self.assertEqual(cli.returncode, 0, cli.stderr)
                got = moereg.open(out, identify=False)
                for name in ("output", "router_logits", "topk_ids", "topk_weights"):
                    self.assertTrue(np.array_equal(getattr(r, name), got.tensor(name)), name)
                want = ref.tensor("output")
                self.assertLessEqual(np.abs(r.output - want).max(), 1e-5 * np.abs(want).max())

    def test_bf16_input_as_uint16_bits(self):
        ref = moereg.open(fixture("qwen3_moe", "moe_block.safetensors"), identify=False)
        x = np.array(ref.tensor("input"))
        bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # truncated to bf16
        r = moereg.moe_run(fixture("qwen3_moe", "hf"), block_layer("qwen3_moe"), bits, backend="cpu")
        r32 = moereg.moe_run(fixture("qwen3_moe", "hf"), block_layer("qwen3_moe"),
                             (bits.astype(np.uint32) << 16).view(np.float32), backend="cpu")
        # The same tokens read as bf16: the same routing, and outputs within the bf16 bound (the
        # backend keeps bf16 activations in bf16: 0.2 % of max here).
        self.assertTrue(np.array_equal(r.topk_ids, r32.topk_ids))
        self.assertLessEqual(np.abs(r.output - r32.output).max(), 1e-2 * np.abs(r32.output).max())

    def test_experts_backend_on_caller_routed_experts(self):
        # qwen3_moe and mixtral have no shared expert: the block's output is the routed sum.
        for family in ("qwen3_moe", "mixtral"):
            with self.subTest(family=family):
                v5 = moereg.open(fixture(family, "transformers_v5.safetensors"), identify=False)
                block = moereg.open(fixture(family, "moe_block.safetensors"), identify=False)
                prefix = f"model.layers.{block_layer(family)}.mlp.experts."
                ids = block.tensor("topk_ids")
                b = moereg.ExpertsBackend(v5.tensor(prefix + "gate_up_proj"), v5.tensor(prefix + "down_proj"),
                                          ids.shape[1], backend="cpu")
                self.assertEqual(b.name, "cpu")
                out = b.forward(block.tensor("input"), ids, block.tensor("topk_weights"))
                want = block.tensor("output")
                self.assertLessEqual(np.abs(out - want).max(), 1e-5 * np.abs(want).max())
                with self.assertRaises(moereg.UsageError):
                    b.forward(block.tensor("input"), np.full_like(ids, 99), block.tensor("topk_weights"))

    def test_bad_inputs_raise(self):
        with self.assertRaises(moereg.InputError) as e:
            moereg.moe_run(fixture("qwen3_moe", "hf"), 1, np.zeros((4, 3), np.float32))
        self.assertIn("expected [T, 64]", str(e.exception))
        with self.assertRaises(moereg.UsageError):  # also a ValueError
            moereg.moe_run(fixture("qwen3_moe", "hf"), 1, np.zeros((4,), np.float32))
        with self.assertRaises(moereg.UsageError) as e:  # was cast to float32 without a word
            moereg.moe_run(fixture("qwen3_moe", "hf"), 1, np.zeros((4, 64), np.int32))
        self.assertIn("input is int32, expected float32", str(e.exception))
        with self.assertRaises(moereg.UsageError):
            moereg.moe_run(fixture("qwen3_moe", "hf"), -1, np.zeros((4, 64), np.float32))


if __name__ == "__main__":
    unittest.main()
