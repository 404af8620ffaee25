"""Label scoring (rank classification): the log-likelihood of every candidate answer after the prompt.

For sequence tasks, and for several sequence tasks together (every combination of labels is a candidate,
:func:`label_candidates`). One forward pass over the prompts fills the KV cache; the candidates' remaining tokens
are laid out as a prefix tree (:class:`CandidateTree`) and scored in one more pass over that cache.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from lit_clf.data.tasks import Example, TaskSpec
from lit_clf.decoder.decoding.base import Decoded
from lit_clf.decoder.kv_cache import cache_kwargs, output_cache
from lit_clf.prompting.answers import ParsedAnswer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from lit_clf.prompting.encoding import PromptEncoder

__all__ = [
    "CandidateTree",
    "ScoreDecoding",
    "candidate_answer_ids",
    "label_candidates",
    "position_ids",
    "score_labels",
]

LengthNormalization = Literal["none", "mean"]


def label_candidates(tasks: Sequence[TaskSpec]) -> list[dict[str, str]]:
    """Every combination of labels of ``tasks`` (task name -> label), first task's label varying slowest.

    Raises:
        ValueError: A task is a token task (its answers cannot be listed; use constrained decoding).
    """
    ScoreDecoding.check(tasks)
    names = [task.name for task in tasks]
    return [dict(zip(names, combo)) for combo in itertools.product(*(task.labels for task in tasks))]


def candidate_answer_ids(encoder: PromptEncoder, candidates: Sequence[Mapping[str, str]]) -> list[list[int]]:
    """Answer ids + EOS of each candidate, exactly as ``encoder`` trains them (``encode_for_training``)."""
    eos = encoder.tokenizer.eos_token_id
    return [encoder.answer_ids(Example(id="", text="", labels=dict(labels))) + [eos] for labels in candidates]


@torch.no_grad()
def score_labels(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    label_token_ids: Sequence[Sequence[int]],
    length_normalization: LengthNormalization = "none",
    candidates_per_pass: int = 64,
    past_key_values=None,
) -> torch.Tensor:
    """Log-likelihood of every candidate answer after every prompt: rank classification.

    One forward pass over the prompts fills the KV cache and scores each candidate's first token. The rest of the
    candidates' tokens are laid out as a prefix tree (``rec.autos`` and ``rec.motorcycles`` share their ``rec.``
    nodes) and scored in one more pass over that cache, which is never copied or repeated: each tree token attends
    to its row's prompt and to its own ancestors through a 4D attention mask, at the position it would have right
    after the prompt. So a batch costs the prompts plus one token per distinct answer prefix.

    More than ``candidates_per_pass`` candidates are scored in several tree passes, the cache being cropped back
    to the prompts after each. The number of passes depends only on the candidates, never on ``B``, so every rank
    of a sharded (FSDP) model runs the same collectives even when its last batch is smaller.

    Args:
        model: A causal LM whose attention takes a 4D mask (``sdpa`` or ``eager`` attention, the defaults).
        prompt_ids: ``(B, T)`` left-padded prompt ids.
        attention_mask: ``(B, T)``, 0 on padding.
        label_token_ids: ``N`` candidates' ids, each the answer ids + EOS (:func:`label_answer_ids`).
        length_normalization: ``none``: sum of the token log-probs; ``mean``: divided by the number of tokens.
        candidates_per_pass: Candidates per tree pass; memory grows with ``B`` times their distinct prefixes
            times the vocabulary size (the logits).
        past_key_values: KV cache of the prompts' first tokens (their shared prefix), one copy per row; only the
            rest of ``prompt_ids`` is then run.

    Returns:
        ``(B, N)`` float32 scores; the prediction is their argmax over candidates.

    Raises:
        ValueError: Bad normalization, right-padded prompts, no candidates, or an attention kernel that
            cannot take a 4D mask (``flash_attention_2``...).
    """
    if length_normalization not in ("none", "mean"):
        raise ValueError(f"length_normalization: expected 'none' or 'mean', got {length_normalization!r}")
    if not bool(attention_mask[:, -1].all()):
        raise ValueError("score_labels: prompts must be left-padded (attention_mask[:, -1] all 1)")
    if not label_token_ids or not all(label_token_ids):
        raise ValueError("label_token_ids: give at least one candidate, each with at least one id")
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"
    if attention not in ("sdpa", "eager"):
        raise ValueError(
            f"score_labels: attention {attention!r} cannot take the 4D tree mask; load the model with "
            "attn_implementation='sdpa' or 'eager'"
        )
    positions = position_ids(attention_mask)
    cached = past_key_values.get_seq_length() if past_key_values is not None else 0
    out = model(
        input_ids=prompt_ids[:, cached:],
        attention_mask=attention_mask,
        position_ids=positions[:, cached:],
        use_cache=True,
        logits_to_keep=1,
        **cache_kwargs(past_key_values),
    )
    first = out.logits[:, -1].float().log_softmax(-1)
    cache, step = output_cache(out), max(1, candidates_per_pass)
    prompt_length = cache.get_seq_length()
    scores = []
    for start in range(0, len(label_token_ids), step):
        tree = CandidateTree.of(label_token_ids[start : start + step])
        chunk = first[:, tree.first_tokens]
        if tree.tokens:
            extra = cache.get_seq_length() - prompt_length
            if extra:  # drop the previous tree pass's tokens (a negative crop: a count, in every version)
                cache.crop(-extra)
            chunk = chunk + _tree_scores(model, cache, attention_mask, positions[:, -1], tree, attention)
        scores.append(chunk)
    result = torch.cat(scores, dim=1)
    if length_normalization == "mean":
        result = result / torch.tensor([len(ids) for ids in label_token_ids], device=result.device)
    return result


@dataclass(frozen=True)
class CandidateTree:
    """Candidates' ids as a prefix tree of input tokens: one node per distinct prefix of length 1 to ``len - 1``.

    Node ``i`` feeds token ``tokens[i]`` at depth ``depths[i]`` (1: a candidate's first token, which follows the
    prompt); its logits predict the next token of every candidate through that prefix. ``picks`` lists, for each
    candidate's tokens after the first, the (node, token, candidate) to read.
    """

    first_tokens: list[int]
    tokens: list[int]
    depths: list[int]
    parents: list[int]
    picks: list[tuple[int, int, int]]

    @classmethod
    def of(cls, label_token_ids: Sequence[Sequence[int]]) -> CandidateTree:
        nodes: dict[tuple[int, ...], int] = {}
        tokens, depths, parents, picks = [], [], [], []
        for candidate, ids in enumerate(label_token_ids):
            for j in range(1, len(ids)):
                prefix = tuple(ids[:j])
                if prefix not in nodes:
                    nodes[prefix] = len(tokens)
                    tokens.append(ids[j - 1])
                    depths.append(j)
                    parents.append(nodes.get(prefix[:-1], -1))
                picks.append((nodes[prefix], ids[j], candidate))
        return cls([ids[0] for ids in label_token_ids], tokens, depths, parents, picks)

    def ancestors(self) -> torch.Tensor:
        """``(M, M)`` bool: ``[i, j]`` when node ``j`` is node ``i`` or one of its ancestors."""
        mask = torch.zeros(len(self.tokens), len(self.tokens), dtype=torch.bool)
        for node, parent in enumerate(self.parents):  # a parent always precedes its children
            if parent >= 0:
                mask[node] = mask[parent]
            mask[node, node] = True
        return mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, as ``generate`` does for left-padded prompts."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _tree_scores(model, cache, attention_mask, last_positions, tree: CandidateTree, attention: str) -> torch.Tensor:
    """``(B, C)`` sums of log p(token j | prompt, tokens < j) over j >= 1 of the tree's ``C`` candidates."""
    device, batch, nodes = attention_mask.device, attention_mask.shape[0], len(tree.tokens)
    inputs = torch.tensor(tree.tokens, device=device).expand(batch, nodes)
    positions = last_positions[:, None] + torch.tensor(tree.depths, device=device)
    allowed = torch.cat(
        [
            attention_mask.bool()[:, None, None, :].expand(batch, 1, nodes, -1),
            tree.ancestors().to(device).expand(batch, 1, nodes, nodes),
        ],
        dim=-1,
    )
    mask = allowed  # sdpa takes a boolean mask; eager adds the mask to the attention scores
    if attention == "eager":
        mask = torch.zeros(allowed.shape, device=device).masked_fill(~allowed, torch.finfo(torch.float32).min)
    logits = model(
        input_ids=inputs, attention_mask=mask, position_ids=positions, use_cache=True, **cache_kwargs(cache)
    ).logits
    node, token, candidate = torch.tensor(tree.picks, device=device).unbind(-1)
    logprobs = logits[:, node, token].float() - logits.float().logsumexp(-1)[:, node]
    scores = torch.zeros(batch, len(tree.first_tokens), device=device)
    return scores.index_add_(1, candidate, logprobs)


class ScoreDecoding:
    """Label scoring: the most likely label (or label combination, for several sequence tasks) among all of them.

    The candidates are tokenized once, exactly as training tokenizes answers; the prediction is read off the
    argmax directly (always valid), with its rendered answer as the text.

    Args:
        encoder: The prompt encoder (tasks in answer order, JSON keys, prompt format, tokenizer).
        length_normalization: Rank by summed token log-probabilities (``none``) or their mean (``mean``).
        candidates_per_pass: Candidates per tree pass over the prompts' KV cache (bounds the logits' memory).
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        length_normalization: LengthNormalization = "none",
        candidates_per_pass: int = 64,
    ) -> None:
        self.encoder = encoder
        self.length_normalization = length_normalization
        self.candidates_per_pass = candidates_per_pass
        self.candidates = label_candidates(encoder.tasks)
        self.ids = candidate_answer_ids(encoder, self.candidates)
        self.texts = [encoder.answer_text(Example("", "", labels)) for labels in self.candidates]

    @classmethod
    def check(cls, tasks: Sequence[TaskSpec]) -> None:
        """Only sequence tasks have a list of candidate answers to score."""
        other = next((task for task in tasks if task.kind != "sequence"), None)
        if other is not None:
            raise ValueError(
                f"decoding='score' ranks the labels of sequence tasks, but {other.name!r} is a {other.kind} task; "
                "use decoding 'free' or 'constrained'"
            )

    def __call__(self, model, batch: dict, synced_gpus: bool = False, past_key_values=None) -> list[Decoded]:
        scores = score_labels(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            self.ids,
            self.length_normalization,
            self.candidates_per_pass,
            past_key_values=past_key_values,
        )
        best = scores.argmax(-1).tolist()
        return [
            Decoded(self.texts[i], {task: ParsedAnswer(label, True) for task, label in self.candidates[i].items()})
            for i in best
        ]
