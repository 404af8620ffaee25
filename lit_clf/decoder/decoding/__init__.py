"""Decoding modes: how a decoder's answers are read in validation, test and predict.

Each mode is a small object built from the prompt encoder and called with the causal LM and a left-padded batch;
it returns one :class:`Decoded` (answer text and labels per task) per row:

* ``free``: greedy generation, parsed (:mod:`.free`);
* ``constrained``: greedy generation allowed only valid answers (:mod:`.constrained`);
* ``score``: the most likely label by log-likelihood, sequence tasks only (:mod:`.score`).

To add a mode: a class with ``__call__(model, batch, synced_gpus) -> list[Decoded]`` and a ``check(tasks)``
classmethod, its name in :data:`DecodingName` and a line in :func:`build_decoding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from lit_clf.data.tasks import TaskSpec
from lit_clf.decoder.decoding.base import Decoded, Decoding
from lit_clf.decoder.decoding.constrained import ConstrainedDecoding
from lit_clf.decoder.decoding.free import FreeDecoding
from lit_clf.decoder.decoding.score import ScoreDecoding
from lit_clf.prompting.encoding import PromptEncoder

DecodingName = Literal["free", "constrained", "score"]
DECODINGS: tuple[str, ...] = get_args(DecodingName)
MODES: dict[str, type] = {"free": FreeDecoding, "constrained": ConstrainedDecoding, "score": ScoreDecoding}


def check_decoding(name: str, tasks: Sequence[TaskSpec]) -> None:
    """One-line errors for an unknown mode, or tasks the mode cannot answer (its ``check``)."""
    if name not in MODES:
        raise ValueError(f"decoding: expected one of {', '.join(DECODINGS)}, got {name!r}")
    MODES[name].check(tasks)


def build_decoding(
    name: str,
    encoder: PromptEncoder,
    max_new_tokens: int | None = None,
    length_normalization: str = "none",
    candidates_per_pass: int = 64,
) -> Decoding:
    """The decoding mode ``name`` for prompts of ``encoder``; the options apply to the modes that use them."""
    if name == "free":
        return FreeDecoding(encoder)
    if name == "constrained":
        return ConstrainedDecoding(encoder, max_new_tokens)
    if name == "score":
        return ScoreDecoding(encoder, length_normalization, candidates_per_pass)
    raise ValueError(f"decoding: expected one of {', '.join(DECODINGS)}, got {name!r}")


__all__ = ["DECODINGS", "MODES", "Decoded", "Decoding", "DecodingName", "build_decoding", "check_decoding"]
