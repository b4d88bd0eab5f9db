# SPDX-License-Identifier: Apache-2.0
"""moereg's backends as an experts implementation of transformers 5.

transformers 5 runs the routed experts of its MoE models through one function chosen by
`experts_implementation` ("eager", "grouped_mm", "batched_mm", ...) from its
ExpertsInterface. register() adds moereg's there:

    import moereg.transformers
    moereg.transformers.register()                     # as "moereg"; backend "auto"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, experts_implementation="moereg")
    # or, on a loaded model: model.set_experts_implementation("moereg")

transformers still routes (the router and its top-k run in PyTorch); moereg runs the experts
of each layer on its backend, reading the layer's fused `gate_up_proj` [E, 2I, H] and
`down_proj` [E, H, I] where they lie (the backend is created once per layer and again when
those parameters change). What moereg's backends do not do goes to transformers' own
grouped_mm, with one warning per reason: experts that are transposed, have biases or a
custom gate, an activation other than SiLU, weights other than bf16/f16/f32, and a forward
that needs gradients.

A model on a CUDA device runs on moereg's CUDA backend with its parameters read where they
lie (no copy: the backend borrows the device memory) and hidden states, ids, weights and
output on the device, with no host synchronisation; this needs bf16 expert weights, the
default CUDA stream (moereg's layer stream is ordered with it) and no CUDA graph capture,
and falls back to grouped_mm otherwise. backend="cpu" with a CUDA model also falls back.

Imported only where transformers is installed; checked on the GPU machine (docs/python.md),
not in CI.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Union

import torch
from transformers.integrations import moe as _hf_moe

from ._moereg import Error, ExpertsBackend

__all__ = ["register", "experts_forward", "reset"]

_log = logging.getLogger("moereg.transformers")
_WEIGHT_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
_warned = set()


def register(name: str = "moereg", *, backend: str = "auto", threads: int = 0,
             backend_options: Optional[Dict[str, str]] = None,
             plugin_path: Union[None, str, Sequence[str]] = None) -> str:
    """Registers moereg as experts implementation `name` with transformers (its
    ExpertsInterface); returns the name. `backend`, `threads` and `backend_options` are those
    of moereg.moe_run (docs/backends.md). Registering again under the same name replaces it."""
    settings = dict(backend=backend, threads=threads, backend_options=dict(backend_options or {}),
                    plugin_path=plugin_path)

    def forward(self, hidden_states, top_k_index, top_k_weights):
        return experts_forward(self, hidden_states, top_k_index, top_k_weights, **settings)

    forward.__name__ = f"moereg_experts_forward_{name}"
    _hf_moe.ExpertsInterface.register(name, forward)
    return name


def reset(model: torch.nn.Module) -> None:
    """Drops the moereg backends made for `model`'s layers (they are remade on the next
    forward): frees what they hold, e.g. after moving the model."""
    for module in model.modules():
        if hasattr(module, "_moereg_backend"):
            del module._moereg_backend


def _unsupported(module: torch.nn.Module, hidden_states: torch.Tensor, backend: str) -> Optional[str]:
    """Why moereg cannot run this experts module as it stands, or None."""
    if getattr(module, "is_transposed", False):
        return "transposed expert weights"
    if getattr(module, "has_bias", False):
        return "expert biases"
    gate = getattr(type(module), "_apply_gate", None)
    if gate is not None and gate is not getattr(_hf_moe, "_default_apply_gate", gate):
        return f"a custom gate ({type(module).__name__}._apply_gate)"
    act = getattr(module, "act_fn", None)
    if not isinstance(act, torch.nn.SiLU) and type(act).__name__ not in ("SiLUActivation", "SiLU"):
        return f"activation {type(act).__name__} (moereg's backends compute SiLU(gate) * up)"
    w = module.gate_up_proj
    devices = {w.device, module.down_proj.device, hidden_states.device}
    if len(devices) > 1:
        return "experts and hidden states on different devices"
    if w.dtype not in _WEIGHT_DTYPES or module.down_proj.dtype != w.dtype:
        return f"expert weights of dtype {w.dtype}"
    if w.device.type == "cuda":
        if backend not in ("auto", "cuda"):
            return f"a CUDA model with backend {backend!r}"
        if w.dtype != torch.bfloat16:
            return f"CUDA-resident expert weights of dtype {w.dtype} (moereg's CUDA backend reads bf16 in place)"
        if torch.cuda.is_current_stream_capturing():
            return "CUDA graph capture (moereg's CUDA layer runs on its own stream)"
        if torch.cuda.current_stream(w.device) != torch.cuda.default_stream(w.device):
            return "a non-default CUDA stream (moereg's CUDA layer is ordered with the default stream only)"
    elif w.device.type != "cpu":
        return f"tensors on {w.device.type}"
    if torch.is_grad_enabled() and (w.requires_grad or hidden_states.requires_grad):
        return "a forward that needs gradients (moereg's backends compute forward only)"
    return None


def _backend(module: torch.nn.Module, top_k: int, settings: dict) -> Union[ExpertsBackend, str]:
    """The layer's backend, made again when its weights moved or changed in place; for a CUDA
    model, the reason no backend could take it (remembered, so it is not retried per call)."""
    gu, down = module.gate_up_proj, module.down_proj
    key = (gu.data_ptr(), down.data_ptr(), gu._version, down._version, gu.dtype, top_k)
    held = getattr(module, "_moereg_backend", None)
    if held is not None and held[0] == key:
        return held[1]
    gu_c, down_c = gu.detach().contiguous(), down.detach().contiguous()
    E, I2, H = gu_c.shape
    device = gu.device.index if gu.device.type == "cuda" else -1
    if device is None:
        device = torch.cuda.current_device()
    try:
        b = ExpertsBackend._from_pointers(gu_c.data_ptr(), down_c.data_ptr(), _WEIGHT_DTYPES[gu.dtype], E, H, I2 // 2,
                                          top_k, settings["backend"], settings["threads"], settings["backend_options"],
                                          settings["plugin_path"], (gu_c, down_c), device)
    except Error as e:
        if device < 0:
            raise
        b = f"no moereg backend takes CUDA-resident experts here ({e})"
    module._moereg_backend = (key, b)
    return b


def experts_forward(module: torch.nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor, *, backend: str = "auto", threads: int = 0,
                    backend_options: Optional[Dict[str, str]] = None, plugin_path=None) -> torch.Tensor:
    """The experts function transformers calls (the signature of its grouped_mm_experts_forward)."""
    why = _unsupported(module, hidden_states, backend)
    if why is not None:
        if why not in _warned:
            _warned.add(why)
            _log.warning("moereg: %s; these experts run on transformers' grouped_mm instead", why)
        return _hf_moe.grouped_mm_experts_forward(module, hidden_states, top_k_index, top_k_weights)
    settings = dict(backend=backend, threads=threads, backend_options=backend_options or {}, plugin_path=plugin_path)
    num_tokens, hidden = hidden_states.shape
    top_k = top_k_index.shape[-1]
    ids = top_k_index.reshape(num_tokens, top_k).to(torch.int64)
    weights = top_k_weights
    if weights.shape != ids.shape:  # DeepSeek-V2 style: a weight per expert, [tokens, experts]
        weights = weights.gather(1, ids.clamp(0, module.num_experts - 1))
    weights = weights.to(torch.float32)
    # Expert parallelism marks tokens of experts held elsewhere with ids >= num_experts:
    # they contribute nothing here. Masked unconditionally: testing first would synchronise
    # with the GPU on every layer.
    outside = ids >= module.num_experts
    ids = ids.masked_fill(outside, 0).contiguous()
    weights = weights.masked_fill(outside, 0.0).contiguous()
    if hidden_states.dtype == torch.bfloat16:
        x, x_dtype = hidden_states.contiguous(), "BF16"
    else:
        x, x_dtype = hidden_states.to(torch.float32).contiguous(), "F32"
    out = torch.empty((num_tokens, hidden), dtype=torch.float32, device=hidden_states.device)
    b = _backend(module, top_k, settings)
    if isinstance(b, str):
        if b not in _warned:
            _warned.add(b)
            _log.warning("moereg: %s; these experts run on transformers' grouped_mm instead", b)
        return _hf_moe.grouped_mm_experts_forward(module, hidden_states, top_k_index, top_k_weights)
    b._forward_pointers(x.data_ptr(), x_dtype, num_tokens, ids.data_ptr(), weights.data_ptr(), out.data_ptr())
    return out.to(hidden_states.dtype)
