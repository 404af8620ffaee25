"""The KV cache of the prompt prefix an evaluation split's prompts share (the instructions and label list before
the text), computed once per evaluation pass and copied per row, so each batch runs only its rows' remainders."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lit_clf.decoder.kv_cache import output_cache


class PrefixCache:
    """The shared prefix's KV cache, kept while the weights stay the same: :meth:`reset` when they may change (the
    decoder module does at the start of every training step and evaluation pass)."""

    def __init__(self) -> None:
        self._kept: tuple[tuple[int, ...], Any] | None = None

    def reset(self) -> None:
        self._kept = None

    @property
    def filled(self) -> bool:
        """Whether a prefix's cache is kept (since the last reset)."""
        return self._kept is not None

    def for_batch(self, model: nn.Module, batch: dict[str, Any]):
        """One copy per row of the cache of the batch's first ``prefix_length`` tokens (computed the first time
        this prefix is seen since the last reset); None when the prompts share nothing."""
        length = int(batch.get("prefix_length", 0))
        if not length:
            return None
        prefix = batch["input_ids"][:1, :length]
        key = tuple(prefix[0].tolist())
        if self._kept is None or self._kept[0] != key:
            out = model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, logits_to_keep=1)
            self._kept = (key, output_cache(out))
        cache = copy.deepcopy(self._kept[1])
        cache.batch_repeat_interleave(batch["input_ids"].shape[0])
        return cache
