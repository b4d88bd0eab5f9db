# SPDX-License-Identifier: Apache-2.0
"""moereg: read, convert and run Mixture-of-Experts checkpoints, from Python.

The module binds libmoereg's application API (docs/library.md); docs/python.md is its manual.

    import moereg
    ck = moereg.open("Qwen3-30B-A3B")                 # family, layout, config; nothing read yet
    w = ck.tensor("model.layers.0.mlp.gate.weight")   # read-only numpy view of the mapped file
    for name, t in moereg.iter_tensors("Qwen3-30B-A3B", "transformers_v5"):
        ...                                           # each tensor made on the fly, once
    moereg.convert("Qwen3-30B-A3B", "out", to="transformers_v5", progress=print)

Every failure is a moereg.Error (UsageError, InputError, Cancelled, InternalError) whose
message is moereg's own.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

from . import lora
from ._moereg import (
    Cancelled,
    Checkpoint,
    ConvertProgress,
    ConvertReport,
    Difference,
    Error,
    ExpertsBackend,
    InputError,
    InternalError,
    LayoutStream,
    MoeResult,
    PlannedTensor,
    TensorInfo,
    UsageError,
    VerifyReport,
    moe_run,
    open,
    open_layout_stream,
    verify,
)
from . import _moereg
from ._torch_bridge import to_torch

__all__ = [
    "Cancelled", "Checkpoint", "ConvertProgress", "ConvertReport", "Difference", "Error", "ExpertsBackend", "InputError",
    "InternalError", "LayoutStream", "MoeResult", "PlannedTensor", "TensorInfo", "UsageError", "VerifyReport",
    "convert", "iter_tensors", "lora", "moe_run", "open", "open_layout_stream", "to_torch", "verify",
]

PathLike = Union[str, "os.PathLike[str]"]


def iter_tensors(
    path: PathLike,
    layout: str = "transformers_v5",
    experts: Optional[Tuple[int, int]] = None,
    *,
    from_layout: Optional[str] = None,
    family: Optional[str] = None,
    dtype: Optional[str] = None,
    threads: int = 0,
    plugin_path: Union[None, PathLike, Sequence[PathLike]] = None,
    framework: str = "numpy",
) -> Iterator[Tuple[str, object]]:
    """The checkpoint's tensors in another layout of its family, as (name, tensor) pairs.

    Each tensor is made when the iterator reaches it (fused, transposed, renamed, FP8 scales
    re-gridded: the bytes `moereg convert` would write) and yielded once, as a new array the
    caller owns; moereg holds nothing else but one expert slot per thread, so memory is
    bounded by the tensors the caller keeps. `experts=(a, b)` keeps experts [a, b) only;
    `dtype="bf16"` dequantizes quantized weights. framework="numpy" yields numpy arrays (bf16
    as uint16 bits, as Checkpoint.tensor); "pt" yields torch tensors of the right dtype, no
    copy made (needs torch).

    The plan is made, and every error raised, by this call, before the first tensor:

        state = dict(moereg.iter_tensors("Qwen3-30B-A3B", "transformers_v5", framework="pt"))
    """
    if framework not in ("numpy", "np", "pt", "torch"):
        raise UsageError(f"framework: 'numpy' or 'pt', not {framework!r}")
    stream = open_layout_stream(path, layout, experts, from_layout=from_layout, family=family, dtype=dtype,
                                threads=threads, plugin_path=plugin_path)
    as_torch = framework in ("pt", "torch")
    if as_torch:
        import torch  # noqa: F401  (fail here, before any tensor is made, when torch is missing)
    return _walk(stream, as_torch)


def _walk(stream: LayoutStream, as_torch: bool) -> Iterator[Tuple[str, object]]:
    for i, info in enumerate(stream.tensors()):
        item = (info.name, to_torch(stream.produce(i), info.dtype) if as_torch else stream.produce(i))
        yield item
        # Drop the generator's own reference before the next tensor is made: otherwise two
        # tensors are alive at once even when the caller keeps none.
        del item


def convert(
    source: PathLike,
    output: Optional[PathLike],
    to: str,
    *,
    from_layout: Optional[str] = None,
    family: Optional[str] = None,
    plugin_path: Union[None, PathLike, Sequence[PathLike]] = None,
    threads: int = 0,
    shard_size: Optional[int] = None,
    experts: Optional[Tuple[int, int]] = None,
    dtype: Optional[str] = None,
    dry_run: bool = False,
    resume: bool = False,
    kernel_copy: bool = True,
    progress: Optional[Callable[[ConvertProgress], None]] = None,
) -> ConvertReport:
    """Convert a checkpoint to another layout of its family, as `moereg convert` does.

    `output` is created (it must not exist, or be empty; None only with dry_run=True).
    shard_size is bytes per shard (default 5 GB; 0 writes one file); experts=(a, b) writes
    experts [a, b) only; dtype="bf16" dequantizes quantized weights; resume=True finishes an
    interrupted job into `output`. `progress(p)` is called about ten times a second with a
    ConvertProgress, and once more with p.final true. ^C (or an exception raised by
    `progress`) stops the job at its next write, keeping what resume=True needs; that
    exception is then raised, noted with what moereg kept. Returns a ConvertReport.
    """
    options = dict(from_layout=from_layout, family=family, plugin_path=plugin_path, threads=threads,
                   shard_size=shard_size, experts=experts, dtype=dtype, dry_run=dry_run, resume=resume,
                   kernel_copy=kernel_copy, progress=progress)
    return _moereg._convert(source, output, to, options)
