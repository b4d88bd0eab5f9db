# SPDX-License-Identifier: Apache-2.0
"""What the module's tests share: where the fixtures and the moereg binary are, and a
safetensors reader of their own (json + struct), so that moereg is checked against an
independent reading of the files rather than against itself."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import unittest
from typing import Dict, Tuple

FIXTURES = os.environ.get("MOEREG_FIXTURES_DIR", "")
BINARY = os.environ.get("MOEREG_BINARY", "")
FAMILIES = ["qwen3_moe", "qwen3_vl_moe", "qwen3_5_moe", "mixtral", "deepseek_v2", "deepseek_v3"]


def fixture(*parts: str) -> str:
    if not FIXTURES or not os.path.isdir(FIXTURES):
        raise unittest.SkipTest("MOEREG_FIXTURES_DIR is not a directory (ctest sets it)")
    return os.path.join(FIXTURES, *parts)


def run_moereg(*args: str) -> subprocess.CompletedProcess:
    """The moereg binary of this build (MOEREG_BINARY, which ctest sets)."""
    if not BINARY or not os.path.exists(BINARY):
        raise unittest.SkipTest("MOEREG_BINARY is not set (ctest sets it)")
    return subprocess.run([BINARY, *args], capture_output=True, text=True)


def cli_error(*args: str) -> str:
    """The message `moereg ARGS` fails with, without its "moereg: error: " prefix."""
    r = run_moereg(*args)
    assert r.returncode != 0, f"moereg {' '.join(args)} succeeded"
    line = r.stderr.strip().splitlines()[-1]
    for prefix in ("moereg: error: ", "moereg: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


# safetensors dtype -> (struct item size), enough to check sizes.
ITEM_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
             "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def read_safetensors(path: str) -> Dict[str, Tuple[str, Tuple[int, ...], bytes]]:
    """name -> (dtype, shape, bytes), read with plain file I/O."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        out[name] = (meta["dtype"], tuple(meta["shape"]), data[begin:end])
    return out


def data_offset(path: str, name: str) -> int:
    """The file offset of a tensor's first byte."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return 8 + n + header[name]["data_offsets"][0]


def address(array) -> int:
    return array.__array_interface__["data"][0]


def read_gguf_tensors(path: str) -> Dict[str, Tuple[int, Tuple[int, ...], int]]:
    """name -> (ggml type, dims as the file lists them (innermost first), absolute offset of
    its data), read with plain file I/O (GGUF v2/v3)."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal pos
        n = take("Q")
        s = buf[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            inner, count = take("I"), take("Q")
            return [value(inner) for _ in range(count)]
        return take(scalar[t])

    assert buf[:4] == b"GGUF", path
    pos = 4
    take("I")  # version
    n_tensors, n_kv = take("Q"), take("Q")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        v = value(take("I"))
        if key == "general.alignment":
            alignment = v
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = tuple(take("Q") for _ in range(take("I")))
        infos.append((name, take("I"), dims, take("Q")))
    data = (pos + alignment - 1) // alignment * alignment
    return {name: (ggml_type, dims, data + offset) for name, ggml_type, dims, offset in infos}
