# SPDX-License-Identifier: Apache-2.0
"""moereg.iter_tensors(): a checkpoint's tensors in another layout, made in memory, equal the
tensors transformers holds (transformers_v5.safetensors) and what `moereg convert` writes."""
import os
import tempfile
import unittest

import moereg
from support import FAMILIES, cli_error, fixture, read_safetensors, run_moereg


class IterTensors(unittest.TestCase):
    def assert_same(self, made, want, subset=False):
        """made: name -> array from iter_tensors; want: name -> (dtype, shape, bytes)."""
        if not subset:
            self.assertEqual(sorted(made), sorted(want))
        for name, (dtype, shape, data) in want.items():
            self.assertIn(name, made)
            self.assertEqual(made[name].shape, shape, name)
            self.assertEqual(made[name].tobytes(), data, name)

    def test_hf_and_hub_to_transformers_v5_equal_the_fixtures(self):
        sources = [(f, "hf") for f in FAMILIES] + [("qwen3_vl_moe", "hub"), ("qwen3_5_moe", "hub")]
        for family, folder in sources:
            with self.subTest(family=family, folder=folder):
                made = dict(moereg.iter_tensors(fixture(family, folder), "transformers_v5"))
                self.assert_same(made, read_safetensors(fixture(family, "transformers_v5.safetensors")))

    def test_fp8_scales_are_regridded_like_the_fixture(self):
        made = dict(moereg.iter_tensors(fixture("deepseek_v3_fp8", "hf"), "transformers_v5"))
        want = read_safetensors(fixture("deepseek_v3_fp8", "transformers_v5_layer1_experts.safetensors"))
        self.assert_same(made, want, subset=True)

    def test_each_tensor_once_in_the_order_convert_writes(self):
        stream = moereg.open_layout_stream(fixture("mixtral", "hf"), "transformers_v5")
        names = [n for n, _ in moereg.iter_tensors(fixture("mixtral", "hf"), "transformers_v5")]
        self.assertEqual(names, [t.name for t in stream.tensors()])
        self.assertEqual(len(names), len(set(names)))

    def test_equal_to_what_moereg_convert_writes(self):
        for family, layout in (("qwen3_moe", "grouped"), ("deepseek_v3", "gguf_names"), ("mixtral", "hf")):
            with self.subTest(family=family, layout=layout), tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "out")
                r = run_moereg("convert", fixture(family, "hf"), out, "--to", layout, "--shard-size", "0")
                self.assertEqual(r.returncode, 0, r.stderr)
                made = dict(moereg.iter_tensors(fixture(family, "hf"), layout))
                self.assert_same(made, read_safetensors(os.path.join(out, "model.safetensors")))

    def test_an_expert_range(self):
        made = dict(moereg.iter_tensors(fixture("qwen3_moe", "hf"), "transformers_v5", experts=(2, 5)))
        full = read_safetensors(fixture("qwen3_moe", "transformers_v5.safetensors"))
        name = "model.layers.0.mlp.experts.gate_up_proj"
        dtype, shape, data = full[name]
        per_expert = len(data) // shape[0]
        self.assertEqual(made[name].shape, (3,) + shape[1:])
        self.assertEqual(made[name].tobytes(), data[2 * per_expert:5 * per_expert])

    def test_an_expert_range_of_a_per_expert_layout_is_numbered_from_zero(self):
        # The names `moereg convert --experts 2:5` writes: the slice is a checkpoint of 3 experts.
        made = dict(moereg.iter_tensors(fixture("qwen3_moe", "hf"), "hf", experts=(2, 5)))
        full = read_safetensors(fixture("qwen3_moe", "hf/model.safetensors"))
        name = "model.layers.1.mlp.experts.{}.up_proj.weight"
        self.assertEqual(made[name.format(0)].tobytes(), full[name.format(2)][2])
        self.assertIn(name.format(2), made)  # expert 4 of the source
        self.assertNotIn(name.format(3), made)

    def test_yielded_arrays_belong_to_the_caller(self):
        name, a = next(moereg.iter_tensors(fixture("qwen3_moe", "hf"), "transformers_v5"))
        self.assertTrue(a.flags.writeable and a.flags.owndata)
        a[...] = 0

    def test_errors_are_raised_by_the_call_with_moereg_s_message(self):
        src = fixture("qwen3_moe", "hf")
        with self.assertRaises(moereg.InputError) as e:
            moereg.iter_tensors(src, "no_such_layout")  # no iteration needed
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(str(e.exception), cli_error("convert", src, os.path.join(d, "o"), "--to", "no_such_layout"))
        with self.assertRaises(moereg.InputError) as e:
            moereg.iter_tensors("/nonexistent/ckpt")
        self.assertIn("/nonexistent/ckpt", str(e.exception))
        with self.assertRaises(moereg.UsageError):
            moereg.iter_tensors(src, experts=(4, 2))
        with self.assertRaises(moereg.UsageError):
            moereg.iter_tensors(src, framework="jax")

    def test_torch_tensors_of_the_real_dtype(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not installed")
        made = dict(moereg.iter_tensors(fixture("qwen3_moe", "hf"), "transformers_v5", framework="pt"))
        want = read_safetensors(fixture("qwen3_moe", "transformers_v5.safetensors"))
        for name, (dtype, shape, data) in want.items():
            self.assertEqual(tuple(made[name].shape), shape)
            self.assertEqual(made[name].dtype, torch.bfloat16 if dtype == "BF16" else made[name].dtype)
            self.assertEqual(made[name].view(torch.uint8).numpy().tobytes() if dtype != "BF16"
                             else made[name].view(torch.int16).numpy().tobytes(), data)


if __name__ == "__main__":
    unittest.main()
