"""Scoring generated answers, shared by the model families that write their answers as text (decoder LLMs, chat
models behind an API): parsed answers -> metric updates and prediction rows.

A sequence answer that is invalid counts as wrong (class id -1), even when a label could be read from it. Token and
multi-label answers are scored best effort: the labels read from an invalid answer are scored as they are (the slot
metrics pad or cut word labels to the gold length, MASSIVE-style). Every task also counts its invalid answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lit_clf.data.tasks import IGNORE_INDEX, Example, TaskSpec

if TYPE_CHECKING:
    from lit_clf.prompting.answers import ParsedAnswer

__all__ = ["collate_gold", "gold_ids", "prediction_rows", "update_answer_metrics"]


def gold_ids(example: Example, tasks: Sequence[TaskSpec]) -> dict[str, Any]:
    """The gold label ids per task, as the metrics take them: an id (sequence), a list of ids (multi-label; None
    when unlabelled) or one id per word (token); ``-100`` / ``[]`` for an unlabelled input (predict on new text).

    Raises:
        ValueError: A label outside the task's label set (naming the example).
    """
    gold: dict[str, Any] = {}
    for task in tasks:
        value = example.labels.get(task.name)
        if value is None:
            gold[task.name] = {"sequence": IGNORE_INDEX, "multilabel": None}.get(task.kind, [])
            continue
        values = [value] if task.kind == "sequence" else list(value)
        label2id = task.label2id
        unknown = [label for label in values if label not in label2id]
        if unknown:
            raise ValueError(f"example {example.id}: label {unknown[0]!r} is not in task {task.name!r}'s label set")
        ids = [label2id[label] for label in values]
        gold[task.name] = ids[0] if task.kind == "sequence" else ids
    return gold


def collate_gold(features: Sequence[Mapping[str, Any]], tasks: Sequence[TaskSpec]) -> dict[str, Any]:
    """A batch's gold ids per task: a tensor for sequence tasks, per-row lists for the others."""
    gold = {}
    for task in tasks:
        values = [feature["gold"][task.name] for feature in features]
        gold[task.name] = torch.tensor(values) if task.kind == "sequence" else values
    return gold


def update_answer_metrics(
    metrics: nn.ModuleDict,
    tasks: Sequence[TaskSpec],
    answers: Sequence[Mapping[str, ParsedAnswer]],
    gold: Mapping[str, Any],
    device: torch.device | str = "cpu",
) -> None:
    """Add one batch of parsed answers to a stage's metrics (:func:`lit_clf.metrics.task_metrics` with invalid rates).

    Args:
        metrics: Task name -> metric name -> metric.
        tasks: The tasks.
        answers: Per row, task name -> parsed answer.
        gold: Per task, the batch's gold ids as generation batches hold them: a ``(B,)`` tensor for a sequence
            task, per row a list of label ids (``None``: unlabelled) for a multi-label task, per row a list of word
            label ids for a token task.
        device: Where the metrics live.
    """
    for task in tasks:
        per_task = metrics[task.name]
        parsed = [row[task.name] for row in answers]
        per_task["invalid_rate"].update(torch.tensor([not a.valid for a in parsed], device=device))
        target = gold[task.name]
        if task.kind == "sequence":
            per_task["acc"].update(_label_ids(parsed, task).to(device), torch.as_tensor(target, device=device))
        elif task.kind == "multilabel":
            scored = [i for i, ids in enumerate(target) if ids is not None]  # None: an unlabelled input
            if scored:
                chosen = _multi_hot([parsed[i].value or [] for i in scored], task).to(device)
                expected = _multi_hot([[task.labels[j] for j in target[i]] for i in scored], task).to(device)
                for name in ("f1", "macro_f1", "exact_match"):
                    per_task[name].update(chosen, expected)
        else:
            words = _word_label_ids(parsed, task)
            per_task["f1"].update(words, target)
            per_task["exact_match"].update(words, target, [a.valid for a in parsed])  # invalid: never a match


def prediction_rows(indices: Sequence[int], texts: Sequence[str], answers: Sequence[Mapping[str, ParsedAnswer]]):
    """Per row: the example's index and, per task, the prediction (best effort when invalid), the raw text and
    whether it was valid; what the prediction writer and the W&B table read."""
    return [
        {"index": int(index), "tasks": {name: _prediction(a, text) for name, a in row.items()}}
        for index, text, row in zip(indices, texts, answers)
    ]


def _prediction(answer: ParsedAnswer, text: str) -> dict[str, Any]:
    return {"pred": answer.value, "raw": text, "valid": answer.valid}


def _label_ids(answers: Sequence[ParsedAnswer], task: TaskSpec) -> torch.Tensor:
    """Class id per answer; -1 (always wrong) for an invalid one."""
    label2id = task.label2id
    return torch.tensor([label2id[a.value] if a.valid and a.value in label2id else -1 for a in answers])


def _multi_hot(label_lists: Sequence[Sequence[str]], task: TaskSpec) -> torch.Tensor:
    """``(N, num_labels)`` 0/1 per answer; labels outside the task are ignored (the parser drops them anyway)."""
    out = torch.zeros(len(label_lists), task.num_labels, dtype=torch.long)
    label2id = task.label2id
    for row, labels in enumerate(label_lists):
        out[row, [label2id[label] for label in labels if label in label2id]] = 1
    return out


def _word_label_ids(answers: Sequence[ParsedAnswer], task: TaskSpec) -> list[list[int]]:
    """Word-label ids per answer, best effort for invalid ones (unknown labels -> the outside label)."""
    label2id, other = task.label2id, task.label2id[task.outside]
    return [[label2id.get(label, other) for label in a.value or []] for a in answers]
