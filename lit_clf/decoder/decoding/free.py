"""Free decoding: greedy generation, then the tolerant parser (invalid answers count as wrong)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn
from transformers import GenerationConfig

from lit_clf.data.tasks import TaskSpec
from lit_clf.decoder.decoding.base import Decoded, read_answer
from lit_clf.decoder.kv_cache import cache_kwargs
from lit_clf.prompting.encoding import PromptEncoder


class FreeDecoding:
    """Greedy generation up to the batch's ``max_new_tokens`` or an end token, parsed per task."""

    def __init__(self, encoder: PromptEncoder) -> None:
        self.encoder = encoder

    @classmethod
    def check(cls, tasks: Sequence[TaskSpec]) -> None:
        """Every task kind can be generated."""

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], synced_gpus: bool = False, past_key_values=None
    ) -> list[Decoded]:
        tokenizer, prompt = self.encoder.tokenizer, batch["input_ids"]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=batch["max_new_tokens"],
            eos_token_id=end_token_ids(model, tokenizer),
            pad_token_id=pad,
        )
        out = model.generate(
            input_ids=prompt,
            attention_mask=batch["attention_mask"],
            generation_config=config,
            synced_gpus=synced_gpus,
            **cache_kwargs(past_key_values),
        )
        texts = tokenizer.batch_decode(out[:, prompt.shape[1] :], skip_special_tokens=True)
        return [read_answer(self.encoder, text, n) for text, n in zip(texts, batch["num_words"])]


def end_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """The tokenizer's EOS (what training appends) and the model's own end tokens (``<|eot_id|>``...)."""
    ids = [tokenizer.eos_token_id]
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += extra if isinstance(extra, list) else [extra] if extra is not None else []
    return list(dict.fromkeys(i for i in ids if i is not None))
