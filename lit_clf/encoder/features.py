"""Examples -> encoder inputs: tokenization, word-to-subword label alignment, dynamic padding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from lit_clf.data.base import DatasetInfo
from lit_clf.data.collate import pad_sequences
from lit_clf.data.tasks import IGNORE_INDEX, OTHER, Example, TaskSpec

WordToken = Literal["first", "last"]


def align_word_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], at: WordToken = "first") -> list[int]:
    """Token-level labels: each word's label on its first (or ``last``) sub-token, ``-100`` elsewhere.

    ``word_ids`` is the fast tokenizer's ``word_ids()`` (``None`` for special tokens). Words that
    truncation cut off get no token; their gold labels stay in the word-level gold sequence.
    """
    labels = [IGNORE_INDEX] * len(word_ids)
    for position in word_token_positions(word_ids, at):
        labels[position] = word_labels[word_ids[position]]
    return labels


def word_token_positions(word_ids: Sequence[int | None], at: WordToken = "first") -> list[int]:
    """Position of the first (or ``last``) sub-token of each word that survived truncation, in word order.

    An encoder reads a word at its first sub-token; a causal decoder at its last, the first that has seen the
    whole word.
    """
    if at not in ("first", "last"):
        raise ValueError(f"word token: expected first or last, got {at!r}")
    positions: list[int] = []
    previous = None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            positions.append(position)
        elif word is not None and at == "last":
            positions[-1] = position
        previous = word
    return positions


class EncoderFeaturizer:
    """Tokenizes examples for :class:`~lit_clf.encoder.EncoderSeqTokenModule` and pads batches.

    With a token task among the tasks, the input is the example's whitespace words
    (``is_split_into_words``) so that every word maps to sub-tokens; otherwise the raw text. Token labels sit on
    each word's ``word_token`` sub-token (``first`` for encoders, ``last`` for causal decoders).
    """

    def __init__(self, tokenizer, tasks: Sequence[TaskSpec], max_length: int, word_token: WordToken = "first") -> None:
        if not tokenizer.is_fast:
            raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; word alignment needs word_ids()")
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.max_length = max_length
        self.by_words = any(task.kind == "token" for task in self.tasks)
        self.word_token = word_token

    def featurize(
        self, examples: Sequence[Example], train: bool = True, info: DatasetInfo | None = None
    ) -> list[dict[str, Any]]:
        """Token ids and aligned labels; the same for training and evaluation (``train``/``info`` unused).

        An example without a label for a task (new text to predict) gets -100 labels for it."""
        inputs = [example.words for example in examples] if self.by_words else [ex.text for ex in examples]
        encoded = self.tokenizer(inputs, is_split_into_words=self.by_words, truncation=True, max_length=self.max_length)
        features = []
        for index, example in enumerate(examples):
            feature = {"index": index, "input_ids": encoded["input_ids"][index], "labels": {}, "word_labels": {}}
            word_ids = encoded.word_ids(index) if self.by_words else None
            if word_ids is not None:
                feature["word_positions"] = word_token_positions(word_ids, self.word_token)
            for task in self.tasks:
                self._add_labels(feature, task, example, word_ids)
            features.append(feature)
        return features

    def _add_labels(self, feature: dict, task: TaskSpec, example: Example, word_ids) -> None:
        label2id = task.label2id
        gold = example.labels.get(task.name)
        if task.kind == "multilabel":  # multi-hot targets; an unlabelled input's row is all -100
            targets = [float(IGNORE_INDEX)] * task.num_labels
            if gold is not None:
                targets = [0.0] * task.num_labels
                for label in gold:
                    targets[_label_id(label2id, label, task, example)] = 1.0
            feature["labels"][task.name] = targets
            return
        if gold is None:  # unlabelled input: nothing to score, one -100 per word for token tasks
            if task.kind == "sequence":
                feature["labels"][task.name] = IGNORE_INDEX
            else:
                feature["word_labels"][task.name] = [IGNORE_INDEX] * len(example.words)
                unlabelled = feature["word_labels"][task.name]
                feature["labels"][task.name] = align_word_labels(word_ids, unlabelled, self.word_token)
            return
        if task.kind == "sequence":
            feature["labels"][task.name] = _label_id(label2id, gold, task, example)
            return
        word_labels = [_label_id(label2id, label, task, example) for label in gold]
        feature["word_labels"][task.name] = word_labels
        feature["labels"][task.name] = align_word_labels(word_ids, word_labels, self.word_token)

    def length(self, feature: dict[str, Any]) -> int:
        return len(feature["input_ids"])

    def describe(self, feature: dict[str, Any]) -> str:
        """The input tokens, and per task the gold label (sequence) or ``token/label`` pairs where a label counts."""
        tokens = self.tokenizer.convert_ids_to_tokens(feature["input_ids"])
        lines = ["tokens: " + " ".join(tokens)]
        for task in self.tasks:
            gold = feature["labels"][task.name]
            if task.kind == "multilabel":
                chosen = [label for label, hot in zip(task.labels, gold) if hot == 1.0]
                lines.append(f"{task.name}: {chosen if gold[0] != IGNORE_INDEX else '(unlabelled)'}")
            elif task.kind == "sequence":
                lines.append(f"{task.name}: {task.labels[gold] if gold != IGNORE_INDEX else '(unlabelled)'}")
            else:
                pairs = [f"{tok}/{task.labels[g]}" for tok, g in zip(tokens, gold) if g != IGNORE_INDEX]
                lines.append(f"{task.name}: " + " ".join(pairs))
        return "\n".join(lines)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [f["input_ids"] for f in features]
        input_ids = pad_sequences(ids, self.tokenizer.pad_token_id)
        batch: dict[str, Any] = {
            "index": torch.tensor([f["index"] for f in features]),
            "input_ids": input_ids,
            "attention_mask": pad_sequences([[1] * len(seq) for seq in ids], 0),
            "labels": {},
        }
        for task in self.tasks:
            values = [f["labels"][task.name] for f in features]
            if task.kind == "sequence":
                batch["labels"][task.name] = torch.tensor(values)
            elif task.kind == "multilabel":
                batch["labels"][task.name] = torch.tensor(values, dtype=torch.float)
            else:
                batch["labels"][task.name] = pad_sequences(values, IGNORE_INDEX)
        if self.by_words:
            batch["word_positions"] = [f["word_positions"] for f in features]
            batch["word_labels"] = {
                name: [f["word_labels"][name] for f in features] for name in features[0]["word_labels"]
            }
        return batch


def _label_id(label2id: dict[str, int], label: str, task: TaskSpec, example: Example) -> int:
    try:
        return label2id[label]
    except KeyError:
        raise ValueError(f"example {example.id}: label {label!r} is not in task {task.name!r}'s label set") from None


def word_predictions(
    token_preds: torch.Tensor, positions: list[list[int]], num_words: list[int], other_id: int
) -> list[list[int]]:
    """Word-level predictions read at each word's labelled sub-token; truncated words predict ``Other``.

    Args:
        token_preds: ``(B, T)`` predicted label ids per token.
        positions: per example, the labelled sub-token's position of each word that was kept.
        num_words: per example, the number of words in the gold sequence.
        other_id: the id of ``Other`` in the task's label list.
    """
    rows = token_preds.tolist()
    return [[row[p] for p in pos] + [other_id] * (n - len(pos)) for row, pos, n in zip(rows, positions, num_words)]


__all__ = [
    "OTHER",
    "EncoderFeaturizer",
    "align_word_labels",
    "word_token_positions",
    "word_predictions",
]
