# SPDX-License-Identifier: Apache-2.0
"""moereg.open() and Checkpoint.tensor(): every tensor of every fixture, as a read-only view
of the mapped file, equals the file's bytes as an independent reader finds them."""
import gc
import glob
import os
import unittest

import numpy as np

import moereg
from support import FAMILIES, address, cli_error, data_offset, fixture, read_gguf_tensors, read_safetensors

NUMPY = {"BF16": np.uint16, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
         "F8_E4M3": np.uint8, "U8": np.uint8, "BOOL": np.bool_, "F64": np.float64}


class EveryFixtureTensor(unittest.TestCase):
    def check_file(self, ck, path):
        want = read_safetensors(path)
        for name, (dtype, shape, data) in want.items():
            t = ck.tensor(name)
            info = ck.info(name)
            self.assertEqual(info.dtype, dtype, name)
            self.assertEqual(info.shape, shape, name)
            self.assertEqual(t.shape, shape, name)
            self.assertEqual(t.dtype, NUMPY[dtype], name)
            self.assertEqual(t.tobytes(), data, f"{path}: {name}")
            self.assertFalse(t.flags.writeable, name)
        return len(want)

    def test_every_safetensors_file_opened_as_tensors(self):
        files = sorted(glob.glob(fixture("**", "*.safetensors"), recursive=True))
        self.assertGreater(len(files), 20)
        checked = 0
        for path in files:
            with self.subTest(path=path):
                ck = moereg.open(path, identify=False)
                self.assertIsNone(ck.family)
                self.assertEqual(len(ck), len(read_safetensors(path)))
                checked += self.check_file(ck, path)
        self.assertGreater(checked, 1000)

    def test_every_gguf_file_opened_as_tensors(self):
        # llama.cpp's own files: F32/F16/BF16 tensors and quantized blocks (Q8_0, Q4_0), which
        # come as uint8 over their bytes.
        files = sorted(glob.glob(fixture("gguf_llamacpp", "*.gguf")))
        self.assertTrue(files)
        for path in files:
            with self.subTest(path=path), open(path, "rb") as f:
                blob = f.read()
                want = read_gguf_tensors(path)
                ck = moereg.open(path, identify=False)
                self.assertEqual(sorted(ck.names()), sorted(want))
                for name, (ggml_type, dims, at) in want.items():
                    t, info = ck.tensor(name), ck.info(name)
                    self.assertEqual(t.tobytes(), blob[at:at + info.nbytes], name)
                    self.assertEqual(address(t) - address(ck.tensor(ck.names()[0])),
                                     at - want[ck.names()[0]][2], name)
                    if ggml_type in (0, 1):  # F32, F16: element shape, PyTorch order
                        self.assertEqual(t.shape, tuple(reversed(dims)), name)
                    elif ggml_type in (2, 8):  # Q4_0, Q8_0 blocks: bytes
                        self.assertEqual(t.dtype, np.uint8, name)
                        self.assertEqual(info.dtype, {2: "Q4_0", 8: "Q8_0"}[ggml_type], name)

    def test_every_checkpoint_directory_opened_as_a_model(self):
        dirs = [fixture(f, "hf") for f in FAMILIES + ["deepseek_v3_fp8"]]
        dirs += [fixture(f, "hub") for f in ("qwen3_vl_moe", "qwen3_5_moe")]
        for d in dirs:
            with self.subTest(checkpoint=d):
                ck = moereg.open(d)
                self.assertIsNotNone(ck.family)
                self.assertIn(ck.layout, ck.layouts)
                self.assertEqual(ck.config["model_type"], ck.model_type)
                self.assertGreater(ck.dims["experts"], 0)
                self.check_file(ck, os.path.join(d, "model.safetensors"))

    def test_family_and_layout_as_detected(self):
        ck = moereg.open(fixture("qwen3_vl_moe", "hub"))
        self.assertEqual((ck.family, ck.layout), ("qwen3_vl_moe", "hf"))
        self.assertEqual(moereg.open(fixture("qwen3_moe", "hf")).layout, "hf")


class NoCopy(unittest.TestCase):
    def test_arrays_view_the_mapping_and_keep_it_alive(self):
        path = fixture("qwen3_moe", "hf", "model.safetensors")
        ck = moereg.open(fixture("qwen3_moe", "hf"))
        names = ck.names()
        a, b = ck.tensor(names[0]), ck.tensor(names[-1])
        # The base is the checkpoint, which owns the mapping; two arrays lie as far apart
        # in memory as their bytes lie apart in the file: both point into one mapping.
        self.assertIs(a.base, ck)
        self.assertEqual(address(b) - address(a), data_offset(path, names[-1]) - data_offset(path, names[0]))
        self.assertEqual(address(ck.tensor(names[0])), address(a))
        with self.assertRaises(ValueError):
            a[...] = 0
        want = read_safetensors(path)[names[-1]][2]
        del ck
        gc.collect()
        self.assertEqual(b.tobytes(), want)  # the array kept the mapping

    def test_bf16_to_torch_without_a_copy(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not installed")
        ck = moereg.open(fixture("qwen3_moe", "hf"))
        name = "model.layers.0.mlp.gate.weight"
        a = ck.tensor(name)
        t = moereg.to_torch(a, ck.info(name))
        self.assertEqual(t.dtype, torch.bfloat16)
        self.assertEqual(tuple(t.shape), a.shape)
        self.assertEqual(t.data_ptr(), address(a))
        self.assertTrue(np.array_equal(t.view(torch.int16).numpy().view(np.uint16), a))


class Errors(unittest.TestCase):
    def test_a_missing_path_raises_moereg_s_message(self):
        with self.assertRaises(moereg.InputError) as e:
            moereg.open("/nonexistent/ckpt")
        self.assertEqual(str(e.exception), cli_error("inspect", "/nonexistent/ckpt"))
        self.assertEqual(e.exception.kind, "input")
        self.assertIsInstance(e.exception, moereg.Error)

    def test_a_file_without_config_cannot_be_identified(self):
        with self.assertRaises(moereg.InputError):
            moereg.open(fixture("qwen3_moe", "moe_block.safetensors"))
        with self.assertRaises(moereg.UsageError):
            moereg.open(fixture("qwen3_moe", "moe_block.safetensors"), identify=False, layout="hf")

    def test_an_unknown_tensor_is_a_key_error(self):
        ck = moereg.open(fixture("qwen3_moe", "hf"))
        with self.assertRaises(KeyError):
            ck.tensor("no.such.tensor")
        self.assertNotIn("no.such.tensor", ck)


if __name__ == "__main__":
    unittest.main()
