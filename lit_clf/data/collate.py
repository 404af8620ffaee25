"""Padding features into batches: ragged id lists into one tensor (both families' featurizers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from lit_clf.data.tasks import IGNORE_INDEX


def pad_sequences(sequences: Sequence[Sequence[int]], pad: int, side: str = "right") -> torch.Tensor:
    """Stack ragged id lists into a ``(B, T)`` LongTensor padded with ``pad`` on ``side``."""
    width = max((len(seq) for seq in sequences), default=0)
    out = torch.full((len(sequences), width), pad, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        values = torch.as_tensor(seq, dtype=torch.long)
        if side == "right":
            out[row, : len(seq)] = values
        else:
            out[row, width - len(seq) :] = values
    return out


def pad_batch(
    features: Sequence[Mapping[str, Sequence[int]]], pad_id: int, side: Literal["left", "right"] = "right"
) -> dict[str, torch.Tensor]:
    """Pad features to the longest one: ``input_ids`` with ``pad_id``, ``attention_mask`` with 0, ``labels`` (and
    ``answer_task``) with -100.

    Args:
        features: Outputs of :meth:`PromptEncoder.encode_for_training` or ``encode_for_generation``.
        pad_id: Id written in padded ``input_ids`` positions (masked out; e.g. EOS when there is no pad token).
        side: ``right`` for training, ``left`` for generation (new tokens then follow every prompt directly).

    Returns:
        Key -> ``(batch, longest)`` long tensor, for each key of the first feature.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side: expected 'left' or 'right', got {side!r}")
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX, "answer_task": IGNORE_INDEX}
    unknown = [key for key in features[0] if key not in fill]
    if unknown:
        raise ValueError(f"pad_batch: no padding value for {unknown[0]!r} (knows {', '.join(fill)})")
    return {key: pad_sequences([feature[key] for feature in features], fill[key], side) for key in features[0]}
