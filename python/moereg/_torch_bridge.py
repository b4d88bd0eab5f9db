# SPDX-License-Identifier: Apache-2.0
"""numpy arrays from moereg as torch tensors of their real dtype, without a copy.

numpy has no bfloat16 or float8, so moereg hands those out as unsigned integers of the same
width holding the bits. torch has both: the array is shared through torch.from_numpy (the
tensor keeps the array, and through it the mapped checkpoint, alive) and its elements
reinterpreted with Tensor.view(dtype). Nothing is copied.
"""
from __future__ import annotations

import warnings

import numpy as np

# moereg dtype -> torch dtype name (looked up on the installed torch: float8 kinds need 2.1+).
_TORCH_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
    "U16": "uint16", "U32": "uint32", "U64": "uint64",
}

# The signed integer of each width: every torch since 1.x shares these with numpy, unlike
# uint16/32/64, so the bits cross as these and are then viewed as the real dtype.
_SHARED = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}


def to_torch(array: np.ndarray, dtype=None):
    """`array` (from Checkpoint.tensor or iter_tensors) as a torch tensor of moereg dtype
    `dtype` ('BF16', 'F8_E4M3', ... or a TensorInfo; None: the array's own dtype), sharing
    its memory. A tensor viewing a mapped checkpoint must not be written to: the mapping is
    read-only and a write ends the process (torch cannot mark a tensor read-only).
    GGUF block types (Q4_K, ...) stay uint8 bytes."""
    import torch

    name = getattr(dtype, "dtype", dtype)
    if name is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "not writable": documented above
            return torch.from_numpy(array)
    target = _TORCH_DTYPES.get(name)
    if target is None:  # a GGUF block type: opaque bytes
        target = "uint8"
    tdtype = getattr(torch, target, None)
    if tdtype is None:
        raise TypeError(f"this torch ({torch.__version__}) has no {target}, needed for moereg dtype {name}")
    width = array.dtype.itemsize
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(array.view(_SHARED[width]) if width in _SHARED else array)
    return t if t.dtype == tdtype else t.view(tdtype)
