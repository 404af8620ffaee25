"""Which hidden state a head reads: the sequence vector of an encoder or a causal decoder, and a word's sub-token.

An encoder's first token (``<s>``, ``[CLS]``) attends to the whole input, so sequence heads read it. A causal
decoder's first token sees nothing but itself: its sequence vector is the *last* real token's state, the one that
has read the whole input. That position comes from the attention mask, never from the pad token id, so it is right
under left and right padding and for tokenizers whose pad token is their EOS (the ``pad_token_id`` bug of
``LlamaForSequenceClassification``, trl #937). For the same reason a causal model reads each word at its last
sub-token, an encoder at its first.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from transformers import PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

Pooling = Literal["auto", "first", "last", "mean"]
POOLINGS: tuple[str, ...] = get_args(Pooling)

__all__ = ["POOLINGS", "Pooling", "is_causal", "last_positions", "pool", "position_ids", "resolve_pooling"]


def is_causal(config: PretrainedConfig) -> bool:
    """Whether a backbone is a causal decoder (Llama, SmolLM2, GPT-2...) rather than an encoder (BERT, RoBERTa...).

    Encoders have a masked-LM head in transformers (some also a causal one); causal decoders have only the latter.
    """
    model_type = getattr(config, "model_type", "")
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def resolve_pooling(pooling: str, causal: bool) -> str:
    """``auto`` -> ``last`` for a causal decoder, ``first`` for an encoder; others as given (checked)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling == "auto":
        return "last" if causal else "first"
    return pooling


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index of each row's last attended token, under left or right padding (0 for an empty row)."""
    running = attention_mask.long().cumsum(-1)
    return running.argmax(-1)  # the first index where the count peaks: the last attended token


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` positions counted over attended tokens only: a left-padded row starts at 0 like a right-padded one."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """``(B, H)`` sequence vectors from ``(B, T, H)`` hidden states: ``first``, ``last`` (attended) or ``mean``."""
    if how == "first":
        return hidden[:, 0]
    if how == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_positions(attention_mask)]
    if how == "mean":
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    raise ValueError(f"pooling: expected first, last or mean, got {how!r}")
