"""Shared-prefix training batches: the prompt that a batch's rows share is computed once.

The paper's prompts repeat one long instruction (the label list) in every example: for MASSIVE intents 448 of
476 tokens are the same in every row. :func:`pack` lays a training batch out as ONE sequence: the longest token
prefix common to every row, then each row's remainder, back to back, without padding::

    [ shared prefix | row 0 remainder | row 1 remainder | ... ]     segments: 0 ... 0 | 1 ... 1 | 2 ... 2 | ...

Each remainder attends to the prefix and causally to itself, never to another row (:func:`segment_mask`), and its
position ids continue from the prefix, so every token sees exactly the context and positions it has in its own
padded row: the loss and every gradient equal the per-row computation. The prefix is found from the ids alone
(no knowledge of templates: user prompt files benefit too) and capped so that every row keeps at least one token
before its first labelled token (a row's first remainder token is predicted from the shared last prefix position,
whose logits cannot depend on the row). With no common prefix this is padding-free packing.

Labels keep the usual shift (the token at ``t + 1`` is predicted at ``t``): the token after a remainder is the next
row's first remainder token, which is always a prompt token (label -100), so no loss crosses rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lit_clf.data.tasks import IGNORE_INDEX


def common_prefix_length(ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix of ``ids`` common to every row, capped so that each row keeps at least one
    unlabelled token after it (at most the row's first labelled position - 1)."""
    cap = min(_first_labelled(row) - 1 for row in labels)
    return _common_prefix(ids, min(cap, *(len(row) for row in ids)))


def _common_prefix(rows: Sequence[Sequence[int]], limit: int) -> int:
    first, length = rows[0], 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return max(length, 0)


def shared_prompt_length(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix common to every prompt of an evaluation split, leaving each prompt at least
    one token (whose logits start its answer)."""
    if not prompts:
        return 0
    return _common_prefix(prompts, min(len(prompt) for prompt in prompts) - 1)


def _first_labelled(labels: Sequence[int]) -> int:
    return next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))


def pack(features: Sequence[dict[str, Any]], share: bool = True) -> dict[str, torch.Tensor]:
    """One packed sequence from training features (``input_ids``, ``labels`` and, if there, ``answer_task``; see the
    module docstring).

    Args:
        features: Training features of one batch.
        share: Share the common prefix; ``False`` packs the rows whole (padding-free packing).

    Returns:
        ``input_ids``, ``labels`` (``answer_task``), ``position_ids`` and ``segments`` (0 for the shared prefix,
        ``r + 1`` for row ``r``'s tokens), each ``(1, T)``; ``rows`` (the batch size) and ``shared_prefix_frac``
        (the fraction of the per-row tokens not computed: ``1 - T / sum of row lengths``).
    """
    ids = [list(f["input_ids"]) for f in features]
    labels = [list(f["labels"]) for f in features]
    prefix = common_prefix_length(ids, labels) if share else 0
    per_token = [key for key in ("input_ids", "labels", "answer_task") if key in features[0]]
    packed = {key: list(features[0][key][:prefix]) for key in per_token}  # the prefix: prompt, no label
    positions, segments = list(range(prefix)), [0] * prefix
    for row, feature in enumerate(features):
        for key in per_token:
            packed[key] += feature[key][prefix:]
        positions += range(prefix, len(ids[row]))
        segments += [row + 1] * (len(ids[row]) - prefix)
    total = sum(len(row) for row in ids)

    def tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long)[None]

    return {
        **{key: tensor(values) for key, values in packed.items()},
        "position_ids": tensor(positions),
        "segments": tensor(segments),
        "rows": len(ids),
        "shared_prefix_frac": 1.0 - len(packed["input_ids"]) / total if total else 0.0,
    }


def packed_saving(features: Sequence[dict[str, Any]]) -> float:
    """Fraction of the padded batch's tokens (rows x longest row) that :func:`pack` with sharing does not compute."""
    ids = [f["input_ids"] for f in features]
    labels = [f["labels"] for f in features]
    prefix = common_prefix_length(ids, labels)
    padded = len(ids) * max(len(row) for row in ids)
    packed = prefix + sum(len(row) - prefix for row in ids)
    return 1.0 - packed / padded


def attention_mask(model, segments: torch.Tensor):
    """The packed sequence's mask in the form the model's attention kernel takes: boolean for ``sdpa``, additive
    for ``eager``, a ``BlockMask`` for ``flex_attention`` (never a dense ``T x T`` tensor).

    Raises:
        ValueError: A kernel that takes no custom mask (``flash_attention_2``...), in one line.
    """
    kernel = getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"
    if kernel == "flex_attention":
        return block_mask(segments)
    if kernel not in ("sdpa", "eager"):
        raise ValueError(
            f"share_prefix: attention {kernel!r} cannot take the packed sequence's mask; load the model with "
            "sdpa, eager or flex_attention, or set share_prefix: false"
        )
    allowed = segment_mask(segments)
    if kernel == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, device=segments.device).masked_fill(~allowed, torch.finfo(torch.float32).min)


def block_mask(segments: torch.Tensor):
    """:func:`segment_mask` as a flex-attention ``BlockMask``: blocks without any visible key are skipped."""
    from torch.nn.attention.flex_attention import create_block_mask

    seg = segments[0]

    def visible(batch, head, query, key):
        return (key <= query) & ((seg[key] == seg[query]) | (seg[key] == 0))

    length = seg.numel()
    return create_block_mask(visible, B=None, H=None, Q_LEN=length, KV_LEN=length, device=seg.device)


def segment_mask(segments: torch.Tensor) -> torch.Tensor:
    """``(1, 1, T, T)`` boolean attention mask of a packed sequence: query ``q`` sees key ``k`` when ``k <= q``
    and ``k`` is in the shared prefix (segment 0) or in ``q``'s own segment."""
    seg = segments[0]
    position = torch.arange(seg.numel(), device=seg.device)
    causal = position[None, :] <= position[:, None]
    visible = (seg[None, :] == seg[:, None]) | (seg[None, :] == 0)
    return (causal & visible)[None, None]


__all__ = [
    "attention_mask",
    "block_mask",
    "common_prefix_length",
    "pack",
    "packed_saving",
    "segment_mask",
    "shared_prompt_length",
]
