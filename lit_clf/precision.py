"""Rotary position buffers in float32 and gradients reduced in float32, whatever the weights' dtype.

A rotary embedding's ``inv_freq`` buffer in bfloat16 (8 bits of mantissa) puts position ``p``'s phase off by up to
``p x 2^-9`` radians: 29 rad at 16k positions for Llama 3 (``rope_theta`` 5e5), so attention scores past a few
hundred tokens are not what the model learned. Two routes cast it:

* FSDP ``bf16-mixed`` (and ``bf16-true``): Lightning's is ``MixedPrecision(param=bf16, reduce=bf16, buffer=bf16)``,
  which also all-reduces the gradients in bfloat16. :func:`fsdp_mixed_precision` gives the strategy
  ``MixedPrecision(param=bf16, reduce=fp32, buffer=fp32)`` before it wraps the model (a strategy given its own
  ``mixed_precision`` keeps it);
* ``bf16-true`` / ``16-true`` (and any ``module.to(bfloat16)``): the precision plugin casts every floating tensor of
  the module. :func:`keep_rotary_float32` puts the float32 values back (``TaskModule.to`` calls it).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

#: Buffer names of rotary embeddings (transformers: ``inv_freq``; some models keep ``original_inv_freq`` too).
ROTARY_BUFFERS = ("inv_freq", "original_inv_freq")

#: Lightning precisions whose FSDP mixed precision would keep buffers and gradient reduction in half precision.
_HALF = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "bf16-true": torch.bfloat16, "16-true": torch.float16}


def rotary_buffers(module: nn.Module) -> Iterator[tuple[nn.Module, str, torch.Tensor]]:
    """``(owner, name, buffer)`` of every rotary buffer under ``module``."""
    for owner in module.modules():
        for name, buffer in owner.named_buffers(recurse=False):
            if name in ROTARY_BUFFERS and buffer.is_floating_point():
                yield owner, name, buffer


def keep_rotary_float32(module: nn.Module, cast) -> nn.Module:
    """``cast(module)`` (a ``.to(...)``, ``.half()``...) with every rotary buffer kept at its float32 values (moved
    to the device the cast moved it to)."""
    kept = [(owner, name, buffer.float().clone()) for owner, name, buffer in rotary_buffers(module)]
    out = cast(module)
    for owner, name, value in kept:
        setattr(owner, name, value.to(device=getattr(owner, name).device))
    return out


def fsdp_mixed_precision(strategy, precision: str):
    """Give an FSDP strategy (Lightning's FSDP1 ``FSDPStrategy``) ``MixedPrecision(param=half, reduce=fp32,
    buffer=fp32)`` for a half-precision run (``bf16-mixed``, ``bf16-true``, and the float16 ones), unless it has a
    mixed precision of its own; returns the one it uses."""
    from torch.distributed.fsdp import MixedPrecision

    half = _HALF.get(str(precision))
    if half is not None and getattr(strategy, "mixed_precision", None) is None:
        fp32 = torch.float32
        strategy.mixed_precision = MixedPrecision(param_dtype=half, reduce_dtype=fp32, buffer_dtype=fp32)
    return strategy.mixed_precision_config
