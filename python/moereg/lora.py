# SPDX-License-Identifier: Apache-2.0
"""moereg.lora: expert LoRA adapters (docs/lora.md): describe one, rewrite it in another
form exactly, or merge it into its base checkpoint written in any layout of the family."""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Tuple, Union

from . import _moereg
from ._moereg import ConvertProgress, ConvertReport, LoraConvertReport, LoraInfo

PathLike = Union[str, "os.PathLike[str]"]
Paths = Union[None, PathLike, Sequence[PathLike]]

__all__ = ["inspect", "convert", "merge", "LoraInfo", "LoraConvertReport"]


def inspect(adapter: PathLike, base: Optional[PathLike] = None, *, peft_version: Optional[str] = None,
            plugin_path: Paths = None) -> LoraInfo:
    """The adapter's form, ranks and targets, read against its base (only the base's config.json
    is read; None: base_model_name_or_path from adapter_config.json, when that is a local
    directory). peft_version: the PEFT that saved it, when adapter_config.json does not say."""
    return _moereg._lora_inspect(adapter, base, peft_version, plugin_path)


def convert(adapter: PathLike, output: PathLike, to: str, *, base: Optional[PathLike] = None,
            peft_version: Optional[str] = None, experts: Optional[Tuple[int, int]] = None,
            plugin_path: Paths = None) -> LoraConvertReport:
    """Rewrite the adapter in another form ('peft_param_wrapper', 'peft_per_expert',
    'nemo_grouped') into `output`: factors copied and re-indexed, never recomputed."""
    return _moereg._lora_convert(adapter, output, to, base, peft_version, experts, plugin_path)


def merge(base: PathLike, adapter: PathLike, output: PathLike, *, to: Optional[str] = None,
          rounding: str = "peft", peft_version: Optional[str] = None, from_layout: Optional[str] = None,
          family: Optional[str] = None, plugin_path: Paths = None, threads: int = 0,
          shard_size: Optional[int] = None, experts: Optional[Tuple[int, int]] = None, resume: bool = False,
          kernel_copy: bool = True, progress: Optional[Callable[[ConvertProgress], None]] = None) -> ConvertReport:
    """Write base + adapter into `output`, in layout `to` (None: the base's own).
    rounding="peft" reproduces PEFT's merge_and_unload bit for bit; "single" rounds once.
    The job runs as moereg.convert's does: sharding, resume, progress, ^C."""
    options = dict(from_layout=from_layout, family=family, plugin_path=plugin_path, threads=threads,
                   shard_size=shard_size, experts=experts, resume=resume, kernel_copy=kernel_copy, progress=progress)
    return _moereg._lora_merge(base, adapter, output, to, rounding, peft_version, options)
