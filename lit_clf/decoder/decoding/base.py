"""What every decoding mode returns, and the synced-generation rule shared by the modes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from lit_clf.prompting.answers import ParsedAnswer
from lit_clf.prompting.encoding import PromptEncoder


@dataclass(frozen=True)
class Decoded:
    """One prompt's answer.

    Attributes:
        text: The answer text (the generation, or the rendered answer that ``score`` picked).
        answers: Task name -> the label(s) read from it (:class:`~lit_clf.prompting.answers.ParsedAnswer`).
    """

    text: str
    answers: dict[str, ParsedAnswer]


class Decoding(Protocol):
    """A way to read answers: called with the causal LM and a left-padded generation batch. Its class's
    ``check(tasks)`` raises a one-line ValueError for tasks it cannot answer (called when the module is built)."""

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], synced_gpus: bool = False, past_key_values=None
    ) -> list[Decoded]:
        """One :class:`Decoded` per row. ``synced_gpus``: every rank runs each forward pass until all are done
        (sharded weights under FSDP). ``past_key_values``: the KV cache of the batch's first
        ``batch["prefix_length"]`` tokens (the prompt prefix every row shares), one copy per row."""


def read_answer(encoder: PromptEncoder, text: str, num_words: int) -> Decoded:
    """A generation read with the prompt's tasks and answer syntax (never raises; see ``parse_answer``)."""
    return Decoded(text, encoder.read(text, num_words))
