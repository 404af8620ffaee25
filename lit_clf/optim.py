"""Optimizers lit_clf adds: torchao's 8-bit AdamW made to work on FSDP2's bf16 DTensor shards.

``torchao.optim.AdamW8bit`` keeps both moments in 8 bits with a float32 scale per block of 256 values, and its
states shard with the parameters under FSDP2 (DTensors). Its states take the parameters' dtype as their apparent
dtype; for bf16 parameters the step's ``state.float()`` then dispatches through DTensor to an operator the 8-bit
state class does not implement (``aten.view.dtype``; torch 2.13, torchao 0.18). :class:`AdamW8bit` gives the
states a float32 apparent dtype instead: the stored codes and scales are the same bytes (the apparent dtype is
only what dequantization returns), and the step computes in float32 as torchao's does.
"""

from __future__ import annotations

try:
    from torchao.optim import AdamW8bit as _TorchaoAdamW8bit
    from torchao.optim.subclass_8bit import OptimState8bit
except ImportError as err:  # the `lowbit` extra
    raise ImportError(f"lit_clf.optim needs torchao: pip install 'lit_clf[lowbit]' ({err})") from None

import torch


class AdamW8bit(_TorchaoAdamW8bit):
    """torchao's ``AdamW8bit`` (same arguments: ``lr``, ``betas``, ``eps``, ``weight_decay``, ``block_size``,
    ``bf16_stochastic_round``) whose 8-bit states work on FSDP2's bf16 DTensor shards.

    ``bf16_stochastic_round: true`` rounds each bf16 weight update up or down at random in proportion to the
    remainder, so updates below bf16's resolution (the paper's lr 1e-6) survive in expectation instead of rounding
    away: bf16 weights without an fp32 master copy.
    """

    @staticmethod
    def _subclass_zeros(p: torch.Tensor, signed: bool, block_size: int):
        return OptimState8bit.zeros(p.shape, signed, block_size, p.device, dtype=torch.float32)


__all__ = ["AdamW8bit"]
