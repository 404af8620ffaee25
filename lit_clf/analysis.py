"""Error analysis of ``lit-clf predict`` output and run comparisons: the logic behind ``notebooks/``.

Everything returns plain lists of dicts (one record per table row), so a notebook shows them with
``pandas.DataFrame(records)`` and plots them with matplotlib; nothing here needs either.

A predictions file has one JSON object per example: ``id``, ``text`` and per task ``{"gold", "pred"}``,
with ``top`` (``[[label, probability], ...]``) for the encoder's sequence tasks, and ``raw`` (the generated
text) and ``valid`` for the decoder's tasks (``pred`` is null when a sequence answer names no label), and for a
few-shot decoder ``shots``: the examples of the row's prompt, each with its ``id`` and labels per task.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from lit_clf.data.tasks import OTHER
from lit_clf.metrics import align_prediction, to_bio
from lit_clf.report.paper import COLUMNS, SHOT_NAMES
from lit_clf.report.runs import ReportError
from lit_clf.report.table import Table

#: Stands in for a prediction that names no label (an invalid decoder answer) in confusion matrices.
INVALID = "(invalid)"

__all__ = [
    "INVALID",
    "comparison",
    "confusion_matrix",
    "invalid_outputs",
    "invalid_summary",
    "load_predictions",
    "per_label_accuracy",
    "prediction_tasks",
    "shot_copying",
    "slot_report",
    "table_records",
    "worst_errors",
]


def _prediction_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "predictions.jsonl").is_file():
        return [path / "predictions.jsonl"]
    ranks = sorted(path.glob("predictions.rank*.jsonl"))
    if ranks:
        return ranks
    raise ReportError(
        f"{path}: no predictions.jsonl (write one with lit-clf predict ... "
        f"--predictions.output_path {path / 'predictions.jsonl'})"
    )


def load_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a predictions file, or of ``predictions.jsonl`` (or every ``predictions.rank<N>.jsonl``
    a multi-process run wrote) in a run folder."""
    rows = []
    for file in _prediction_files(Path(path)):
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ReportError(f"{file}, line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or "id" not in row:
                raise ReportError(f"{file}, line {number}: expected an object with id, text and one entry per task")
            rows.append(row)
    return rows


def prediction_tasks(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Task name -> ``sequence`` or ``token`` (a list of word labels), in the file's order."""
    tasks: dict[str, str] = {}
    for row in rows[:1]:
        for name, value in row.items():
            if isinstance(value, dict) and "gold" in value:
                tasks[name] = "token" if isinstance(value["gold"], list) else "sequence"
    return tasks


def _pairs(rows: Sequence[dict[str, Any]], task: str) -> list[tuple[str, str | None]]:
    return [(row[task]["gold"], row[task].get("pred")) for row in rows if task in row]


def per_label_accuracy(rows: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Per gold label of a sequence task: ``support``, ``correct``, ``accuracy`` and how often the label was
    ``predicted``; worst accuracy first (then larger support, then label)."""
    support, correct, predicted = Counter(), Counter(), Counter()
    for gold, pred in _pairs(rows, task):
        support[gold] += 1
        correct[gold] += pred == gold
        predicted[pred] += 1
    records = [
        {
            "label": label,
            "support": support[label],
            "correct": correct[label],
            "accuracy": correct[label] / support[label],
            "predicted": predicted[label],
        }
        for label in support
    ]
    return sorted(records, key=lambda r: (r["accuracy"], -r["support"], r["label"]))


def confusion_matrix(rows: Sequence[dict[str, Any]], task: str) -> tuple[list[str], list[list[int]]]:
    """(labels, counts) of a sequence task: ``counts[i][j]`` examples of gold ``labels[i]`` predicted as
    ``labels[j]``. Labels are the gold and predicted ones, sorted, then :data:`INVALID` if any answer was."""
    pairs = [(gold, INVALID if pred is None else pred) for gold, pred in _pairs(rows, task)]
    seen = {label for pair in pairs for label in pair}
    labels = sorted(seen - {INVALID}) + ([INVALID] if INVALID in seen else [])
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for gold, pred in pairs:
        counts[index[gold]][index[pred]] += 1
    return labels, counts


def worst_errors(rows: Sequence[dict[str, Any]], task: str, k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` worst wrong predictions of a sequence task.

    With ``top`` (encoder rows) the lowest probability of the gold label first (``gold_prob`` is None when
    the gold label is not among the top labels, so below all of them; ties: the more confident wrong label
    first); without it, the wrong predictions in file order.
    """
    errors = []
    for row in rows:
        result = row.get(task)
        if result is None or result.get("pred") == result["gold"]:
            continue
        top = result.get("top")
        gold_prob = dict(map(tuple, top)).get(result["gold"]) if top else None
        errors.append(
            {
                "id": row["id"],
                "text": row.get("text", ""),
                "gold": result["gold"],
                "pred": result.get("pred"),
                "gold_prob": gold_prob,
                "pred_prob": top[0][1] if top else None,
                "raw": result.get("raw"),
            }
        )
    if any(error["pred_prob"] is not None for error in errors):
        errors.sort(key=lambda e: (e["gold_prob"] or 0.0, -(e["pred_prob"] or 0.0)))
    return errors[:k]


def slot_report(rows: Sequence[dict[str, Any]], task: str = "slots", outside: str = OTHER) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per slot type of a token task, the MASSIVE way (predictions padded or
    cut to the gold length, word labels -> BIO spans with :func:`lit_clf.metrics.to_bio`, seqeval's default
    conlleval mode); worst F1 first, then the ``micro avg`` row, which equals :func:`lit_clf.metrics.slot_f1`."""
    from seqeval.metrics import classification_report
    from sklearn.exceptions import UndefinedMetricWarning

    gold_bio, pred_bio = [], []
    for gold, pred in _pairs(rows, task):
        gold_bio.append(to_bio(gold, outside))
        pred_bio.append(to_bio(align_prediction(pred or [], len(gold), outside), outside))
    if not any(tag != "O" for tags in gold_bio + pred_bio for tag in tags):
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        report = classification_report(gold_bio, pred_bio, output_dict=True, zero_division=0)
    records = [
        {
            "slot": name,
            "precision": float(scores["precision"]),
            "recall": float(scores["recall"]),
            "f1": float(scores["f1-score"]),
            "support": int(scores["support"]),
        }
        for name, scores in report.items()
    ]
    per_type = sorted((r for r in records if not r["slot"].endswith(" avg")), key=lambda r: (r["f1"], -r["support"]))
    return per_type + [r for r in records if r["slot"] == "micro avg"]


def invalid_outputs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every decoder answer flagged ``valid: false``: id, task, text, gold, what was parsed and the ``raw`` text."""
    found = []
    for row in rows:
        for task, result in row.items():
            if isinstance(result, dict) and result.get("valid") is False:
                found.append(
                    {
                        "id": row["id"],
                        "task": task,
                        "text": row.get("text", ""),
                        "gold": result["gold"],
                        "pred": result.get("pred"),
                        "raw": result.get("raw"),
                    }
                )
    return found


def invalid_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task: ``invalid`` answers, ``total`` answers and the ``rate`` (rows without ``valid`` count as valid)."""
    records = []
    for task in prediction_tasks(rows):
        results = [row[task] for row in rows if task in row]
        invalid = sum(result.get("valid") is False for result in results)
        records.append(
            {"task": task, "invalid": invalid, "total": len(results), "rate": invalid / max(len(results), 1)}
        )
    return records


def shot_copying(rows: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """How a few-shot decoder's answers for a single-label task relate to the examples its prompts showed (the
    rows' ``shots``): for every row, the rows whose gold label is among their shots' labels and the others, the
    ``count`` of rows, their ``accuracy`` and the share of answers that repeat a shot's label (``copied``).

    A model that reads the examples as a menu copies one of their labels whatever the query (``copied`` near 1,
    accuracy high only where the gold label happens to be among them); one that has learnt the task does not.

    Raises:
        ValueError: No row holds ``shots`` (a zero-shot run), or ``task`` is not a single-label task of the rows.
    """
    shown = [row for row in rows if row.get("shots") and task in row]
    if not shown:
        raise ValueError(f"no prediction of task {task!r} holds shots (a zero-shot run, or another task)")
    if not isinstance(shown[0][task]["gold"], str):
        raise ValueError(f"task {task!r}: shot copying is measured on a single-label task")
    groups: dict[str, list[tuple[bool, bool]]] = {"all": [], "gold among the shots": [], "gold not among the shots": []}
    for row in shown:
        labels = {shot[task] for shot in row["shots"] if shot.get(task) is not None}
        gold, pred = row[task]["gold"], row[task].get("pred")
        outcome = (pred == gold, pred is not None and pred in labels)
        groups["all"].append(outcome)
        groups["gold among the shots" if gold in labels else "gold not among the shots"].append(outcome)
    return [
        {
            "examples": name,
            "count": len(outcomes),
            "accuracy": sum(right for right, _ in outcomes) / max(len(outcomes), 1),
            "copied": sum(copied for _, copied in outcomes) / max(len(outcomes), 1),
        }
        for name, outcomes in groups.items()
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Comparing runs (lit_clf.report tables)


def table_records(table: Table) -> list[dict[str, Any]]:
    """One record per filled cell of a :class:`lit_clf.report.Table`: the row's fields, the column's dataset,
    setup and task (as the table titles them: ``MASSIVE``, ``Intent``), ``value`` in percent and the ``run`` that
    filled it."""
    records = []
    for row in table.rows:
        for i, column in enumerate(COLUMNS):
            value = table.value(row, i)
            if value is None:
                continue
            records.append(
                {
                    "row": row.label,
                    "model": row.model,
                    "family": "decoder" if row.decoder else "encoder",
                    "shots": row.shots,
                    "fine_tuned": row.fine_tuned,
                    "variant": row.variant,
                    "dataset": column.dataset_title,
                    "setup": column.setup,
                    "task": column.title,
                    "column": column.name,
                    "value": value,
                    "run": table.cells[(row, i)].source,
                }
            )
    return records


def _suffix(variant: str) -> str:
    return f" ({variant})" if variant else ""


def comparison(table: Table, by: Literal["family", "setup", "shots"]) -> list[dict[str, Any]]:
    """Records ``{group, series, value}`` for a grouped bar chart of one comparison, where the runs allow it.

    ``family``: per column, the best encoder vs the best decoder value. ``setup``: per row and task, the dual
    vs the consolidated value. ``shots``: per decoder model, fine-tuning and column, zero- vs five-shot.
    """
    records = table_records(table)
    if by == "family":
        best: dict[tuple[str, str], float] = {}
        for r in records:
            key = (r["column"], r["family"])
            best[key] = max(best.get(key, r["value"]), r["value"])
        return [{"group": column, "series": family, "value": value} for (column, family), value in best.items()]
    if by == "setup":
        return [
            {"group": f"{r['row']}: {r['dataset']} {r['task']}", "series": r["setup"], "value": r["value"]}
            for r in records
        ]
    if by == "shots":
        return [
            {
                "group": f"{r['model']} {'w/' if r['fine_tuned'] else 'w/o'} FT{_suffix(r['variant'])}: {r['column']}",
                "series": SHOT_NAMES.get(r["shots"], f"{r['shots']}-shot"),
                "value": r["value"],
            }
            for r in records
            if r["family"] == "decoder"
        ]
    raise ValueError(f"by must be 'family', 'setup' or 'shots', got {by!r}")
