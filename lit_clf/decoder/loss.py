"""The decoder's training loss: cross-entropy on the answer tokens, pooled over tokens or averaged per task.

``loss_weighting: token`` (the paper, and every SFT recipe): the mean over all answer tokens (and EOS) of the
batch, so a task weighs as much as its answers are long. In the consolidated MASSIVE answer
(``{"task1": "news_query", "task2": ["Other", "Other", "place_name"]}``) the intent label is about a tenth of the
tokens (3.7 of 37.5 on the SmolLM2 tokenizer, over 200 dev utterances): next to a dual intent model, whose loss is
all intent, the consolidated model learns the intent from a much smaller share of its loss.

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


def answer_cross_entropy(
    logits: torch.Tensor, gold: torch.Tensor, answer_task: torch.Tensor | None = None
) -> torch.Tensor:
    """The answer loss from the logits at the answer positions.

    Args:
        logits: ``(..., V)`` logits, one row per predicted position.
        gold: ``(...)`` the tokens to predict; -100 where nothing is (padding of a union of positions).
        answer_task: ``(...)`` the task index of each gold token (-100 where ``gold`` is); None: the mean over
            tokens (``loss_weighting: token``).

    Returns:
        Scalar loss: the mean over tokens, or with ``answer_task`` the mean over the tasks present of each task's
        mean over its tokens.
    """
    flat_logits, flat_gold = logits.reshape(-1, logits.shape[-1]), gold.reshape(-1)
    if answer_task is None:
        return F.cross_entropy(flat_logits, flat_gold, ignore_index=IGNORE_INDEX)
    per_token = F.cross_entropy(flat_logits, flat_gold, ignore_index=IGNORE_INDEX, reduction="none")
    tasks = answer_task.reshape(-1)
    present = [task for task in tasks.unique().tolist() if task != IGNORE_INDEX]
    if not present:  # no answer token: the pooled mean's value (nan) and graph
        return per_token.sum() / 0.0
    return torch.stack([per_token[tasks == task].mean() for task in present]).mean()


__all__ = ["LOSS_WEIGHTINGS", "LossWeighting", "answer_cross_entropy"]
