"""The decoder's training loss: cross-entropy on the answer tokens, pooled over tokens or averaged per task.

``loss_weighting: token`` (the paper, and every SFT recipe): the mean over all answer tokens (and EOS) of the
batch, so a task weighs as much as its answers are long. Under data parallel the batch is the global one: the token
count is summed over processes (:func:`pooled_loss`), so 8 processes x 1 row give the loss of 1 process x 8 rows,
not a mean of per-row means in which a 4-token intent answer weighs as much as a 100-token slot list.

In the consolidated MASSIVE answer (``{"task1": "news_query", "task2": ["Other", "Other", "place_name"]}``) the
intent label is about a tenth of the tokens (3.7 of 37.5 on the SmolLM2 tokenizer, over 200 dev utterances): next
to a dual intent model, whose loss is all intent, the consolidated model learns the intent from a much smaller
share of its loss.

``loss_weighting: task``: each task's part of the answer
(:meth:`~lit_clf.prompting.encoding.PromptEncoder.answer_ids_and_tasks`) is averaged over the batch on its own, then
the tasks present are averaged with equal weight, as the encoder's equal-weighted per-task cross-entropy. With one
task the two are equal.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

from lit_clf.data.tasks import IGNORE_INDEX

#: ``token``: every answer token weighs the same (the paper). ``task``: every task's part of the answer does.
LossWeighting = Literal["token", "task"]
LOSS_WEIGHTINGS: tuple[str, ...] = get_args(LossWeighting)


def answer_loss_terms(
    logits: torch.Tensor, gold: torch.Tensor, answer_task: torch.Tensor | None = None, num_tasks: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts the answer loss is made of: per task, the summed cross-entropy over its answer tokens and their
    count (one entry, all tokens, without ``answer_task``). Summed over processes they give the loss of the whole
    global batch (:func:`pooled_loss`).

    Args:
        logits: ``(..., V)`` logits, one row per predicted position.
        gold: ``(...)`` the tokens to predict; -100 where nothing is (padding of a union of positions).
        answer_task: ``(...)`` the task index (in ``range(num_tasks)``) of each gold token, -100 where ``gold`` is;
            None: token weighting.
        num_tasks: The number of tasks ``answer_task`` indexes.

    Returns:
        ``(sums, counts)``, float tensors of ``num_tasks`` entries (1 without ``answer_task``).
    """
    flat_logits, flat_gold = logits.reshape(-1, logits.shape[-1]), gold.reshape(-1)
    per_token = F.cross_entropy(flat_logits, flat_gold, ignore_index=IGNORE_INDEX, reduction="none")
    if answer_task is None:
        return per_token.sum().reshape(1), (flat_gold != IGNORE_INDEX).sum().reshape(1).to(per_token.dtype)
    tasks = answer_task.reshape(-1)
    kept = tasks != IGNORE_INDEX
    index = tasks.clamp(min=0)
    sums = per_token.new_zeros(num_tasks).index_add(0, index[kept], per_token[kept])
    counts = per_token.new_zeros(num_tasks).index_add(0, index[kept], torch.ones_like(per_token[kept]))
    return sums, counts


def pooled_loss(sums: torch.Tensor, counts: torch.Tensor, world_size: int = 1) -> torch.Tensor:
    """The loss of the global batch from one process's :func:`answer_loss_terms` and ``counts`` summed over every
    process: each task's summed cross-entropy over its global token count, the tasks present averaged, times
    ``world_size``, so that data parallel's gradient average over processes gives the gradient of the global batch's
    loss (N processes x B rows = 1 process x N*B rows), and the mean over processes of the value is that loss.
    No answer token anywhere: the pooled mean's value (nan), as a plain mean would give."""
    present = counts > 0
    if not present.any():
        return sums.sum() / 0.0
    return (sums[present] / counts[present]).sum() / present.sum() * world_size


def answer_cross_entropy(
    logits: torch.Tensor, gold: torch.Tensor, answer_task: torch.Tensor | None = None
) -> torch.Tensor:
    """The answer loss of one process's batch (:func:`answer_loss_terms` pooled alone).

    Returns:
        Scalar loss: the mean over tokens, or with ``answer_task`` the mean over the tasks present of each task's
        mean over its tokens.
    """
    num_tasks = 1 if answer_task is None else int(answer_task.max().clamp(min=0)) + 1
    return pooled_loss(*answer_loss_terms(logits, gold, answer_task, num_tasks))


__all__ = ["LOSS_WEIGHTINGS", "LossWeighting", "answer_cross_entropy", "answer_loss_terms", "pooled_loss"]
