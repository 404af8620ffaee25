"""Metrics: plain accuracy, MASSIVE-convention slot F1 and exact match, and the invalid-output rate.

Slot F1 follows the MASSIVE reference code (alexa/massive, ``src/massive/utils/training_utils.py``,
``convert_to_bio`` and ``eval_preds``) exactly:

1. a predicted word-label sequence is padded with ``Other`` or truncated to the gold length;
2. both sequences become BIO tags, a span being a run of equal non-``Other`` labels;
3. ``seqeval.metrics.f1_score(gold_bio, pred_bio)`` with its defaults: conlleval mode (no ``scheme``),
   micro average over all spans of all utterances, a 0-1 fraction (the paper reports it times 100).

The ``Metric`` classes keep word-label *ids* (strings cannot be all-gathered) as flat ``cat`` states plus
per-utterance lengths, so ragged sequences survive DDP sync; ``compute`` maps ids back to strings and calls
the plain functions, so the distributed value is the single-process value by construction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from seqeval.metrics import f1_score
from sklearn.exceptions import UndefinedMetricWarning
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassCalibrationError, MultilabelExactMatch, MultilabelF1Score
from torchmetrics.utilities import dim_zero_cat

from lit_clf.compat import MetricSyncHooks
from lit_clf.data.tasks import IGNORE_INDEX, OTHER, SpanScheme, TaskSpec

__all__ = [
    "Accuracy",
    "InvalidRate",
    "SlotExactMatch",
    "SlotF1",
    "align_prediction",
    "exact_match",
    "sequence_accuracy",
    "slot_f1",
    "task_metrics",
    "to_bio",
]


# ---------------------------------------------------------------------------------------------------------------------
# Plain functions on word-label strings


def to_bio(labels: Sequence[str], outside: str = OTHER) -> list[str]:
    """Word labels -> BIO tags the way MASSIVE's ``convert_to_bio`` does it.

    A span is a maximal run of equal labels other than ``outside``: ``[date, date, Other, time]`` ->
    ``[B-date, I-date, O, B-time]``. Two adjacent slots of the same type therefore merge into one span
    (``[date, date]`` is one span even if the annotation had two). MASSIVE's word labels cannot tell them
    apart either, so this is its known, intended behaviour, and scores stay comparable with the paper.
    """
    tags = []
    previous = None
    for label in labels:
        if label == outside:
            tags.append("O")
        elif label == previous:
            tags.append(f"I-{label}")
        else:
            tags.append(f"B-{label}")
        previous = label
    return tags


def align_prediction(pred: Sequence[str], gold_len: int, outside: str = OTHER) -> list[str]:
    """Pad ``pred`` with ``outside`` or truncate it to ``gold_len`` words (MASSIVE's ``pad='Other'``)."""
    return list(pred[:gold_len]) + [outside] * (gold_len - len(pred))


def _check_same_count(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"got {len(gold)} gold utterances but {len(pred)} predictions; expected one per utterance")


def slot_f1(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], outside: str = OTHER, scheme: SpanScheme = "runs"
) -> float:
    """Micro span F1 (0-1) over all utterances, as MASSIVE's ``eval_preds`` computes ``slot_micro_f1``.

    Args:
        gold: One word-label sequence per utterance.
        pred: One predicted word-label sequence per utterance, of any length (aligned to the gold length).
        outside: The label of words outside every slot.
        scheme: ``runs``: word labels become BIO tags by :func:`to_bio` (MASSIVE). ``bio``: the labels are BIO tags
            already and are scored as they are: the standard entity-level seqeval (conlleval) micro F1 of CoNLL
            and WNUT (an ``I-`` tag without its ``B-`` starts an entity, as conlleval counts it).

    With no span in gold nor prediction seqeval's F1 is undefined; it returns 0.0 and MASSIVE reports that
    0.0, so we do too, without seqeval's ``UndefinedMetricWarning``.
    """
    _check_same_count(gold, pred)
    if not gold:
        return 0.0  # seqeval raises on an empty list (so would MASSIVE); nothing to score is 0.0, as in exact_match
    aligned = [align_prediction(p, len(g), outside) for g, p in zip(gold, pred)]
    if scheme == "bio":
        gold_bio, pred_bio = [list(g) for g in gold], aligned
    else:
        gold_bio, pred_bio = [to_bio(g, outside) for g in gold], [to_bio(p, outside) for p in aligned]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(f1_score(gold_bio, pred_bio))


def exact_match(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    outside: str = OTHER,
    valid: Sequence[bool] | None = None,
) -> float:
    """Fraction of utterances whose aligned predicted word labels equal the gold ones (0.0 for no utterances).

    MASSIVE compares the BIO sequences; with one ``outside`` label, BIO tags and word labels determine each
    other, so comparing word labels is the same test. MASSIVE's ``ex_match_acc`` also requires the intent to
    match; this is the slots-only part. An invalid answer (``valid`` False: a generated answer that could not be
    read) is never a match, though padding its best-effort labels with ``outside`` would match an utterance
    without slots; slot F1 still scores the best-effort labels, as MASSIVE pads them.
    """
    _check_same_count(gold, pred)
    if not gold:
        return 0.0
    valid = [True] * len(gold) if valid is None else list(valid)
    matches = sum(ok and list(g) == align_prediction(p, len(g), outside) for g, p, ok in zip(gold, pred, valid))
    return matches / len(gold)


# ---------------------------------------------------------------------------------------------------------------------
# torchmetrics versions


def _flatten_ids(rows: Tensor | Sequence[Sequence[int]], name: str) -> tuple[Tensor, Tensor]:
    """A batch of id sequences -> (flat ids, one length per utterance); ``IGNORE_INDEX`` entries are dropped."""
    if isinstance(rows, Tensor):
        if rows.ndim != 2 or rows.is_floating_point():
            raise ValueError(
                f"{name}: expected an integer (batch, words) tensor padded with {IGNORE_INDEX}, "
                f"got {rows.dtype} of shape {tuple(rows.shape)}"
            )
        keep = rows != IGNORE_INDEX
        return rows[keep].long(), keep.sum(dim=1)
    kept = [[int(i) for i in row if int(i) != IGNORE_INDEX] for row in rows]
    flat = torch.tensor([i for row in kept for i in row], dtype=torch.long)
    return flat, torch.tensor([len(row) for row in kept], dtype=torch.long)


class _WordLabelMetric(MetricSyncHooks):
    """Base of the slot metrics: collects word-label id sequences, scores them as strings in ``compute``.

    Args:
        labels: The word label list; a label's index is its id (``TaskSpec.labels`` of the slot task).
        outside: The label of words outside every slot; must be in ``labels``.
        scheme: How the labels mark spans (``runs`` or ``bio``; see :func:`slot_f1`).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    pred_ids: list[Tensor]
    pred_lengths: list[Tensor]
    target_ids: list[Tensor]
    target_lengths: list[Tensor]

    def __init__(self, labels: Sequence[str], outside: str = OTHER, scheme: SpanScheme = "runs", **kwargs) -> None:
        super().__init__(**kwargs)
        if outside not in labels:
            raise ValueError(f"labels: the outside label {outside!r} is missing from {list(labels)[:5]}...")
        self.labels = tuple(labels)
        self.outside = outside
        self.scheme = scheme
        # Each update appends the ids of all its utterances concatenated, and their lengths: ids split by
        # lengths give back the sequences, and "cat" keeps ids and lengths in the same rank order.
        for prefix in ("pred", "target"):
            self.add_state(f"{prefix}_ids", default=[], dist_reduce_fx="cat")
            self.add_state(f"{prefix}_lengths", default=[], dist_reduce_fx="cat")
        self.add_state("valid", default=[], dist_reduce_fx="cat")

    def update(
        self,
        preds: Tensor | Sequence[Sequence[int]],
        target: Tensor | Sequence[Sequence[int]],
        valid: Tensor | Sequence[bool] | None = None,
    ) -> None:
        """Add a batch of utterances.

        Args:
            preds: Predicted word-label ids per utterance: a list of id sequences (any lengths, as a decoder
                produces them) or a (batch, words) tensor; entries equal to -100 are dropped as padding.
                Token-level encoders first mask non-word positions with the gold mask.
            target: Gold word-label ids per utterance, in the same forms.
            valid: Per utterance, whether the prediction was a readable answer (default: all); exact match never
                counts an invalid one.
        """
        pred_ids, pred_lengths = _flatten_ids(preds, "preds")
        target_ids, target_lengths = _flatten_ids(target, "target")
        if len(pred_lengths) != len(target_lengths):
            raise ValueError(f"preds has {len(pred_lengths)} utterances but target has {len(target_lengths)}")
        for name, ids in (("preds", pred_ids), ("target", target_ids)):
            bad = ids[(ids < 0) | (ids >= len(self.labels))]
            if bad.numel():
                raise ValueError(f"{name}: label id {bad[0].item()} is outside [0, {len(self.labels)}) and not -100")
        self.pred_ids.append(pred_ids.to(self.device))
        self.pred_lengths.append(pred_lengths.to(self.device))
        self.target_ids.append(target_ids.to(self.device))
        self.target_lengths.append(target_lengths.to(self.device))
        flags = torch.ones(len(pred_lengths), dtype=torch.long) if valid is None else torch.as_tensor(valid).long()
        if flags.numel() != len(pred_lengths):
            raise ValueError(f"valid has {flags.numel()} flags but preds has {len(pred_lengths)} utterances")
        self.valid.append(flags.to(self.device))

    def before_sync(self) -> None:
        # torchmetrics stands in a float32 tensor for an empty list state (a rank that saw no batch); an
        # all_gather of float32 beside other ranks' int64 would mix dtypes, so stand in an int64 one.
        for name in ("pred_ids", "pred_lengths", "target_ids", "target_lengths", "valid"):
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.zeros(0, dtype=torch.long, device=self.device)])

    def _decode(self, ids: list[Tensor] | Tensor, lengths: list[Tensor] | Tensor) -> list[list[str]]:
        if isinstance(lengths, list) and not lengths:
            return []
        flat = dim_zero_cat(ids).long().tolist()
        sequences, start = [], 0
        for n in dim_zero_cat(lengths).long().tolist():
            sequences.append([self.labels[i] for i in flat[start : start + n]])
            start += n
        return sequences

    def _score(self, gold: list[list[str]], pred: list[list[str]], valid: list[bool]) -> float:
        raise NotImplementedError

    def compute(self) -> Tensor:
        gold = self._decode(self.target_ids, self.target_lengths)
        pred = self._decode(self.pred_ids, self.pred_lengths)
        valid = [] if isinstance(self.valid, list) and not self.valid else dim_zero_cat(self.valid).bool().tolist()
        score = self._score(gold, pred, valid or [True] * len(gold))
        return torch.tensor(score, dtype=torch.float32, device=self.device)


class SlotF1(_WordLabelMetric):
    """MASSIVE slot micro F1 (0-1) over everything seen since the last reset; see :func:`slot_f1`."""

    def _score(self, gold: list[list[str]], pred: list[list[str]], valid: list[bool]) -> float:
        return slot_f1(gold, pred, self.outside, self.scheme)


class SlotExactMatch(_WordLabelMetric):
    """Fraction of utterances whose slot labels are all right; see :func:`exact_match`."""

    def _score(self, gold: list[list[str]], pred: list[list[str]], valid: list[bool]) -> float:
        return exact_match(gold, pred, self.outside, valid)


class Accuracy(Metric):
    """Plain accuracy (micro), where an unparseable prediction counts as wrong.

    ``MulticlassAccuracy`` rejects a prediction of -1. With ``ignore_index=-100`` a prediction of -100
    passes and micro averaging counts it wrong, but only by implementation detail (its value check counts
    distinct values; it skips by target only). Two sum states are the simplest exact, DDP-safe alternative.

    Args:
        num_classes: Number of classes; if given, predictions and targets are checked against it.
        ignore_index: Target value of positions to skip.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(self, num_classes: int | None = None, ignore_index: int = IGNORE_INDEX, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch.

        Args:
            preds: Class ids of target's shape, any negative id (e.g. -1) marking an invalid output; or
                scores with an extra class dimension after the batch one, which are argmaxed.
            target: Gold class ids; positions equal to ``ignore_index`` are skipped.
        """
        if preds.is_floating_point():
            preds = preds.argmax(dim=1)
        if preds.shape != target.shape:
            raise ValueError(f"preds of shape {tuple(preds.shape)} do not match target of shape {tuple(target.shape)}")
        counted = target != self.ignore_index
        if self.num_classes is not None:
            if (preds >= self.num_classes).any():
                raise ValueError(f"preds: class ids must be below num_classes={self.num_classes} (negative = invalid)")
            if ((target[counted] < 0) | (target[counted] >= self.num_classes)).any():
                raise ValueError(f"target: class ids must be in [0, {self.num_classes}) or {self.ignore_index}")
        self.correct += (preds.eq(target) & counted).sum()
        self.total += counted.sum()

    def compute(self) -> Tensor:
        """Correct / counted; 0.0 before any counted position."""
        return self.correct.float() / self.total.clamp(min=1)


def sequence_accuracy(num_classes: int) -> Accuracy:
    """Accuracy for a sequence task (intent, topic); mark an invalid decoder answer with class id -1."""
    return Accuracy(num_classes)


class InvalidRate(Metric):
    """Fraction of outputs flagged invalid (e.g. a decoder answer that names no label)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    invalid: Tensor
    total: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("invalid", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, invalid: Tensor) -> None:
        """Add a batch of flags, one per output (any shape; True or nonzero = invalid)."""
        self.invalid += invalid.bool().sum()
        self.total += invalid.numel()

    def compute(self) -> Tensor:
        """Invalid / total; 0.0 before any output."""
        return self.invalid.float() / self.total.clamp(min=1)


class BrierScore(Metric):
    """Multi-class Brier score: the mean over examples of the squared distance between the predicted probability
    vector and the one-hot gold label (0 is perfect, 2 the worst; a uniform guess over C labels scores 1 - 1/C)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    total: Tensor
    count: Tensor

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Add ``(N, C)`` probabilities and ``(N,)`` gold class ids (rows with a negative id are skipped)."""
        keep = target >= 0
        probs, target = probs[keep].double(), target[keep].long()
        onehot = torch.nn.functional.one_hot(target, self.num_classes).double()
        self.total += (probs - onehot).square().sum()
        self.count += target.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class CalibrationError(MulticlassCalibrationError):
    """Expected calibration error (15 equal-width confidence bins, L1): how far the top label's probability is from
    how often it is right; torchmetrics' ``MulticlassCalibrationError``, skipping rows with a negative gold id."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes=num_classes, n_bins=15, norm="l1", **kwargs)

    def update(self, probs: Tensor, target: Tensor) -> None:
        keep = target >= 0
        super().update(probs[keep].float(), target[keep].long())


def task_metrics(tasks: Sequence[TaskSpec], invalid_rate: bool = False, calibration: bool = False) -> nn.ModuleDict:
    """One stage's metrics: task name -> metric name -> metric.

    Sequence tasks get ``acc`` and, with ``calibration`` (a family that gives a probability per label), ``ece``
    (:class:`CalibrationError`) and ``brier`` (:class:`BrierScore`); multi-label tasks ``f1`` (micro), ``macro_f1``
    and ``exact_match`` (all labels of an example right); token tasks ``f1`` (scored by the task's span scheme) and
    ``exact_match``; with ``invalid_rate`` (generated answers) every task also gets ``invalid_rate``.
    """
    metrics = nn.ModuleDict()
    for task in tasks:
        if task.kind == "sequence":
            per_task = {"acc": Accuracy()}
            if calibration:
                per_task |= {"ece": CalibrationError(task.num_labels), "brier": BrierScore(task.num_labels)}
        elif task.kind == "multilabel":
            per_task = {
                "f1": MultilabelF1Score(task.num_labels, average="micro", zero_division=0.0),
                "macro_f1": MultilabelF1Score(task.num_labels, average="macro", zero_division=0.0),
                "exact_match": MultilabelExactMatch(task.num_labels),
            }
        else:
            labels = list(task.labels)
            per_task = {
                "f1": SlotF1(labels, task.outside, task.scheme),
                "exact_match": SlotExactMatch(labels, task.outside),
            }
        if invalid_rate:
            per_task["invalid_rate"] = InvalidRate()
        metrics[task.name] = nn.ModuleDict(per_task)
    return metrics
