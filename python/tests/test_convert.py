# SPDX-License-Identifier: Apache-2.0
"""moereg.convert(), moereg.verify() and moereg.lora: round trips checked against the
fixtures, progress, a callback that raises, and moereg's messages as exceptions."""
import os
import signal
import tempfile
import unittest

import moereg
from support import cli_error, fixture, read_safetensors


class Convert(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def test_round_trip_with_progress_and_verify(self):
        seen = []
        v5 = os.path.join(self.tmp, "v5")
        report = moereg.convert(fixture("qwen3_moe", "hf"), v5, "transformers_v5", progress=seen.append)
        self.assertEqual((report.family, report.from_layout, report.to), ("qwen3_moe", "hf", "transformers_v5"))
        self.assertTrue(seen and seen[-1].final)
        self.assertEqual(seen[-1].bytes, report.total_bytes)
        self.assertEqual(seen[-1].tensors, report.tensors)
        same = moereg.verify(v5, fixture("qwen3_moe", "transformers_v5.safetensors"))
        self.assertTrue(same.equal and same)
        self.assertGreater(same.compared, 0)
        back = os.path.join(self.tmp, "back")
        moereg.convert(v5, back, "hf", shard_size=0)
        want = read_safetensors(fixture("qwen3_moe", "hf", "model.safetensors"))
        got = read_safetensors(os.path.join(back, "model.safetensors"))
        self.assertEqual({k: v for k, v in got.items()}, want)

    def test_verify_reports_differences(self):
        r = moereg.verify(fixture("qwen3_moe", "hf"), fixture("mixtral", "hf"))
        self.assertFalse(r.equal)
        self.assertFalse(r)
        self.assertTrue(r.differences)
        self.assertIn(r.differences[0].kind, ("missing_in_a", "missing_in_b", "dtype", "shape", "bytes"))

    def test_dry_run_plans_and_writes_nothing(self):
        out = os.path.join(self.tmp, "never")
        r = moereg.convert(fixture("mixtral", "hf"), out, "transformers_v5", dry_run=True)
        self.assertEqual(len(r.plan), r.tensors)
        self.assertTrue(any("experts" in p.name for p in r.plan))
        self.assertFalse(os.path.exists(out))

    def test_a_callback_that_raises_stops_the_job(self):
        out = os.path.join(self.tmp, "stopped")

        def progress(p):
            raise ZeroDivisionError("from the callback")

        # The exception is the caller's: raised, never swallowed, noted with what moereg did
        # (the job stops at its next write; one that had finished says so).
        with self.assertRaises(ZeroDivisionError) as e:
            moereg.convert(fixture("deepseek_v3_fp8", "hf"), out, "transformers_v5", shard_size=1, threads=1,
                           progress=progress)
        self.assertIn("from the callback", str(e.exception))
        self.assertTrue(any(n.startswith("moereg: ") for n in getattr(e.exception, "__notes__", ["moereg: "])))

    def test_ctrl_c_is_a_keyboard_interrupt(self):
        out = os.path.join(self.tmp, "interrupted")

        def progress(p):
            os.kill(os.getpid(), signal.SIGINT)  # as ^C would, while the job runs

        with self.assertRaises(KeyboardInterrupt):
            moereg.convert(fixture("deepseek_v3_fp8", "hf"), out, "transformers_v5", shard_size=1, threads=1,
                           progress=progress)

    def test_errors_carry_moereg_s_message(self):
        src = fixture("qwen3_moe", "hf")
        out = os.path.join(self.tmp, "o")
        with self.assertRaises(moereg.InputError) as e:
            moereg.convert(src, out, "no_such_layout")
        self.assertEqual(str(e.exception), cli_error("convert", src, out, "--to", "no_such_layout"))
        with self.assertRaises(moereg.InputError) as e:
            moereg.convert("/nonexistent/ckpt", out, "transformers_v5")
        self.assertEqual(str(e.exception), cli_error("convert", "/nonexistent/ckpt", out, "--to", "transformers_v5"))
        with self.assertRaises(moereg.UsageError) as e:
            moereg.convert(src, out, "transformers_v5", experts=(3, 1))
        self.assertIsInstance(e.exception, ValueError)
        with self.assertRaises(moereg.InputError):
            moereg.verify("/nonexistent/a", src)
        with self.assertRaises(TypeError):
            moereg._moereg._convert(src, out, "hf", {"no_such_option": 1})
        # A value of the wrong shape or range: moereg.UsageError naming the argument (pybind's
        # cast error said "Unable to cast Python instance to C++ type").
        for kw, says in [({"experts": (0, 1, 2)}, "experts=(0, 1, 2): expected a pair"),
                         ({"shard_size": -5}, "shard_size=-5: expected a size in bytes"),
                         ({"dtype": "fp16"}, "dtype='fp16': expected 'bf16'")]:
            with self.assertRaises(moereg.UsageError) as e:
                moereg.convert(src, out, "transformers_v5", dry_run=True, **kw)
            self.assertIn(says, str(e.exception))
            self.assertEqual(e.exception.kind, "usage")
        self.assertFalse(os.path.exists(out))
        # Raised by Python code, the classes still carry kind and signal.
        self.assertEqual((moereg.UsageError("x").kind, moereg.UsageError("x").signal), ("usage", 0))
        self.assertEqual(moereg.Cancelled("x").kind, "cancelled")


class Lora(unittest.TestCase):
    def test_inspect_and_merge_reproduce_peft(self):
        adapter = fixture("lora", "qwen3_moe", "peft_param_wrapper")
        info = moereg.lora.inspect(adapter, fixture("qwen3_moe", "hf"))
        self.assertEqual(info.form, "peft_param_wrapper")
        self.assertEqual(info.rank, 4)
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "merged")
            moereg.lora.merge(fixture("qwen3_moe", "hf"), adapter, out, to="transformers_v5")
            r = moereg.verify(out, fixture("lora", "qwen3_moe", "merged_transformers_v5.safetensors"))
            self.assertTrue(r.equal, r.differences[:3])
            per_expert = os.path.join(d, "per_expert")
            moereg.lora.convert(adapter, per_expert, "peft_per_expert", base=fixture("qwen3_moe", "hf"))
            self.assertEqual(moereg.lora.inspect(per_expert, fixture("qwen3_moe", "hf")).form, "peft_per_expert")


if __name__ == "__main__":
    unittest.main()
