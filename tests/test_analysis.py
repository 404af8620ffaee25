"""lit_clf.analysis: per-label accuracy, confusion, worst errors, slot errors by type, invalid outputs, comparisons."""

from __future__ import annotations

import json

import pytest

from lit_clf.analysis import (
    INVALID,
    comparison,
    confusion_matrix,
    invalid_outputs,
    invalid_summary,
    load_predictions,
    per_label_accuracy,
    prediction_tasks,
    shot_copying,
    slot_report,
    worst_errors,
)
from lit_clf.data.tasks import OTHER as O  # noqa: E741 (short, so the label rows stay readable)
from lit_clf.metrics import slot_f1
from lit_clf.report import ReportError, Row, Run, build_table


def encoder_row(id_, text, intent, pred, top, gold_slots, pred_slots):
    return {
        "id": id_,
        "text": text,
        "intent": {"gold": intent, "pred": pred, "top": top},
        "slots": {"gold": gold_slots, "pred": pred_slots},
    }


ENCODER_ROWS = [
    encoder_row(
        "1",
        "wake me up at five am",
        "alarm_set",
        "alarm_set",
        [["alarm_set", 0.9], ["alarm_query", 0.05], ["iot_hue", 0.01]],
        [O, O, O, O, "time", "time"],
        [O, O, O, O, "time", "time"],
    ),
    encoder_row(
        "2",
        "set an alarm for seven",
        "alarm_set",
        "alarm_query",
        [["alarm_query", 0.6], ["alarm_set", 0.3], ["iot_hue", 0.05]],
        [O, O, O, O, "time"],
        [O, O, O, O, "date"],
    ),
    encoder_row(
        "3",
        "what is the weather",
        "weather_query",
        "alarm_query",
        [["alarm_query", 0.7], ["news_query", 0.2], ["iot_hue", 0.1]],
        [O, O, O, O],
        [O, O, O],  # shorter than gold: padded with Other
    ),
    encoder_row(
        "4",
        "play jazz in the kitchen",
        "play_music",
        "play_music",
        [["play_music", 0.8], ["iot_hue", 0.1], ["news_query", 0.05]],
        [O, "music_genre", O, O, "house_place"],
        [O, "music_genre", O, O, "house_place", "date"],  # longer than gold: cut
    ),
]

DECODER_ROWS = [
    {
        "id": "a",
        "text": "wake me up",
        "intent": {"gold": "alarm_set", "pred": "alarm_set", "raw": "alarm_set", "valid": True},
    },
    {
        "id": "b",
        "text": "set an alarm",
        "intent": {"gold": "alarm_set", "pred": None, "raw": "I think it is an alarm", "valid": False},
    },
    {
        "id": "c",
        "text": "play jazz",
        "intent": {"gold": "play_music", "pred": "alarm_set", "raw": "alarm_set", "valid": True},
    },
]


def test_tasks_and_kinds():
    assert prediction_tasks(ENCODER_ROWS) == {"intent": "sequence", "slots": "token"}
    assert prediction_tasks(DECODER_ROWS) == {"intent": "sequence"}


def test_per_label_accuracy_worst_first():
    assert per_label_accuracy(ENCODER_ROWS, "intent") == [
        {"label": "weather_query", "support": 1, "correct": 0, "accuracy": 0.0, "predicted": 0},
        {"label": "alarm_set", "support": 2, "correct": 1, "accuracy": 0.5, "predicted": 1},
        {"label": "play_music", "support": 1, "correct": 1, "accuracy": 1.0, "predicted": 1},
    ]


def test_confusion_matrix():
    assert confusion_matrix(ENCODER_ROWS, "intent") == (
        ["alarm_query", "alarm_set", "play_music", "weather_query"],
        [[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]],
    )
    assert confusion_matrix(DECODER_ROWS, "intent") == (
        ["alarm_set", "play_music", INVALID],
        [[1, 0, 1], [1, 0, 0], [0, 0, 0]],
    )


def test_worst_errors_lowest_gold_probability_first():
    errors = worst_errors(ENCODER_ROWS, "intent")
    assert [(e["id"], e["gold_prob"], e["pred_prob"]) for e in errors] == [("3", None, 0.7), ("2", 0.3, 0.6)]
    assert worst_errors(ENCODER_ROWS, "intent", k=1)[0]["text"] == "what is the weather"


def test_worst_errors_without_top_are_the_wrong_ones_in_order():
    assert [(e["id"], e["pred"], e["raw"]) for e in worst_errors(DECODER_ROWS, "intent")] == [
        ("b", None, "I think it is an alarm"),
        ("c", "alarm_set", "alarm_set"),
    ]


def test_slot_report_per_type_and_micro_equals_slot_f1():
    report = slot_report(ENCODER_ROWS, "slots")
    rounded = [{**r, **{k: round(r[k], 4) for k in ("precision", "recall", "f1")}} for r in report]
    assert rounded == [
        {"slot": "date", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        {"slot": "time", "precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2},
        {"slot": "house_place", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        {"slot": "music_genre", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        {"slot": "micro avg", "precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4},
    ]
    gold = [row["slots"]["gold"] for row in ENCODER_ROWS]
    pred = [row["slots"]["pred"] for row in ENCODER_ROWS]
    assert report[-1]["f1"] == pytest.approx(slot_f1(gold, pred))


def test_slot_report_without_spans_is_empty():
    rows = [{"id": "1", "text": "hi", "slots": {"gold": [O], "pred": [O]}}]
    assert slot_report(rows) == []


def test_invalid_outputs_and_rates():
    assert invalid_outputs(DECODER_ROWS) == [
        {
            "id": "b",
            "task": "intent",
            "text": "set an alarm",
            "gold": "alarm_set",
            "pred": None,
            "raw": "I think it is an alarm",
        }
    ]
    assert invalid_summary(DECODER_ROWS) == [{"task": "intent", "invalid": 1, "total": 3, "rate": 1 / 3}]
    assert invalid_outputs(ENCODER_ROWS) == []


def few_shot_row(id_, gold, pred, shot_labels):
    shots = [{"id": f"train-{i}", "intent": label, "slots": [O]} for i, label in enumerate(shot_labels)]
    return {"id": id_, "text": "t", "intent": {"gold": gold, "pred": pred, "raw": pred, "valid": True}, "shots": shots}


def test_shot_copying_splits_rows_by_whether_the_gold_label_was_shown():
    rows = [
        few_shot_row("1", "alarm_set", "alarm_set", ["alarm_set", "news_query"]),  # shown, right, copied
        few_shot_row("2", "alarm_set", "news_query", ["alarm_set", "news_query"]),  # shown, wrong, copied
        few_shot_row("3", "iot_hue", "news_query", ["alarm_set", "news_query"]),  # not shown, wrong, copied
        few_shot_row("4", "iot_hue", "iot_hue", ["alarm_set", "news_query"]),  # not shown, right, not copied
        few_shot_row("5", "iot_hue", None, ["alarm_set"]),  # invalid answer: wrong, not copied
        {"id": "6", "text": "t", "intent": {"gold": "iot_hue", "pred": "iot_hue"}},  # no shots: left out
    ]
    assert shot_copying(rows, "intent") == [
        {"examples": "all", "count": 5, "accuracy": 2 / 5, "copied": 3 / 5},
        {"examples": "gold among the shots", "count": 2, "accuracy": 1 / 2, "copied": 1.0},
        {"examples": "gold not among the shots", "count": 3, "accuracy": 1 / 3, "copied": 1 / 3},
    ]


def test_shot_copying_needs_shots_and_a_single_label_task():
    with pytest.raises(ValueError, match="no prediction of task 'intent' holds shots"):
        shot_copying(ENCODER_ROWS, "intent")
    rows = [few_shot_row("1", "alarm_set", "alarm_set", ["alarm_set"]) | {"slots": {"gold": [O], "pred": [O]}}]
    with pytest.raises(ValueError, match="task 'slots': shot copying is measured on a single-label task"):
        shot_copying(rows, "slots")


def test_load_predictions_from_a_run_folder_file_or_ranks(tmp_path):
    lines = [json.dumps(row) for row in ENCODER_ROWS]
    (tmp_path / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    assert load_predictions(tmp_path) == ENCODER_ROWS
    assert load_predictions(tmp_path / "predictions.jsonl") == ENCODER_ROWS
    ranks = tmp_path / "ddp"
    ranks.mkdir()
    (ranks / "predictions.rank0.jsonl").write_text("\n".join(lines[:2]) + "\n")
    (ranks / "predictions.rank1.jsonl").write_text("\n".join(lines[2:]) + "\n")
    assert load_predictions(ranks) == ENCODER_ROWS


def test_load_predictions_errors_name_the_file(tmp_path):
    with pytest.raises(ReportError, match=r"no predictions\.jsonl \(write one with lit-clf predict"):
        load_predictions(tmp_path)
    bad = tmp_path / "predictions.jsonl"
    bad.write_text(json.dumps(ENCODER_ROWS[0]) + "\n{not json\n")
    with pytest.raises(ReportError) as err:
        load_predictions(tmp_path)
    assert str(err.value) == f"{bad}, line 2: not valid JSON (Expecting property name enclosed in double quotes)"


def _comparison_table():
    runs = [
        Run("a", Row("RoBERTa-base"), ("intent",), {"test/intent_acc": 0.5}),
        Run("b", Row("RoBERTa-base"), ("intent", "slots"), {"test/intent_acc": 0.75, "test/slots_f1": 0.25}),
        Run("c", Row("Llama3-8B", True, 0, True), ("intent",), {"test/intent_acc": 0.875}),
        Run("d", Row("Llama3-8B", True, 5, True), ("intent",), {"test/intent_acc": 0.625}),
    ]
    return build_table(runs)


def test_comparisons():
    table = _comparison_table()
    assert comparison(table, "family") == [
        {"group": "MASSIVE Dual Intent", "series": "encoder", "value": 50.0},
        {"group": "MASSIVE Consolidated Intent", "series": "encoder", "value": 75.0},
        {"group": "MASSIVE Consolidated Slot Filling", "series": "encoder", "value": 25.0},
        {"group": "MASSIVE Dual Intent", "series": "decoder", "value": 87.5},
    ]
    assert comparison(table, "setup")[:3] == [
        {"group": "RoBERTa-base: MASSIVE Intent", "series": "Dual", "value": 50.0},
        {"group": "RoBERTa-base: MASSIVE Intent", "series": "Consolidated", "value": 75.0},
        {"group": "RoBERTa-base: MASSIVE Slot Filling", "series": "Consolidated", "value": 25.0},
    ]
    assert comparison(table, "shots") == [
        {"group": "Llama3-8B w/ FT: MASSIVE Dual Intent", "series": "Five-shot", "value": 62.5},
        {"group": "Llama3-8B w/ FT: MASSIVE Dual Intent", "series": "Zero-shot", "value": 87.5},
    ]
    with pytest.raises(ValueError, match="by must be"):
        comparison(table, "size")
