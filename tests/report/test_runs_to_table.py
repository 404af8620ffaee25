"""lit_clf.report end to end: run folders (CSV, W&B files, W&B offline log, W&B export) -> the exact Table 3 text.

Reading runs (report.runs), filling the table (report.table) and the command line (report.cli) are tested together
here because they share the synthetic runs below, written the way LightningCLI, the CSVLogger and W&B write them.
"""

# ruff: noqa: E501 (the golden tables are one line per row)

from __future__ import annotations

import configparser
import csv
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lit_clf.report import (
    COLUMNS,
    Row,
    build_table,
    find_runs,
    main,
    read_wandb_export,
    to_csv,
    to_markdown,
)

ENCODER = "lit_clf.encoder.EncoderSeqTokenModule"
DECODER = "lit_clf.decoder.DecoderGenerativeModule"
HEADER = (
    "| Model | 20NG Dual 20-class | 20NG Dual 7-class | 20NG Consolidated 20-class | 20NG Consolidated 7-class | "
    "MASSIVE Dual Intent | MASSIVE Dual Slot Filling | MASSIVE Consolidated Intent | MASSIVE Consolidated Slot Filling |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
)
CSV_COLUMNS = ",".join(column.name for column in COLUMNS)


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic runs, written the way LightningCLI, the CSVLogger and W&B write them


def _data(tasks: list[str]) -> dict:
    dataset = "MassiveDataModule" if tasks[0] in ("intent", "slots") else "NewsgroupsDataModule"
    return {"class_path": f"lit_clf.data.{dataset}", "init_args": {"tasks": tasks, "batch_size": 32}}


def encoder_config(backbone: str, tasks: list[str], **top) -> dict:
    model = {"class_path": ENCODER, "init_args": {"backbone": backbone, "max_length": 512}}
    return {"seed_everything": 42, "model": model, "data": _data(tasks), "ckpt_path": None, **top}


def decoder_config(backbone: str, shots: int, tasks: list[str], decoding: str = "free", **top) -> dict:
    init_args = {"backbone": backbone, "shots": shots, "decoding": decoding, "prompt_format": "llama2", "lora": None}
    return {
        "seed_everything": 42,
        "model": {"class_path": DECODER, "init_args": init_args},
        "data": _data(tasks),
        **top,
    }


def fit_rows(**test: float) -> list[dict]:
    """metrics.csv of `lit-clf fit` with test_after_fit: train, val, then the test row."""
    return [
        {"epoch": 0, "step": 49, "train/loss": 1.5},
        {"epoch": 0, "step": 99, "val/loss": 1.0},
        {"epoch": 1, "step": 100, **test},
    ]


def eval_rows(**test: float) -> list[dict]:
    """metrics.csv of `lit-clf test`: one row at step 0."""
    return [{"epoch": 0, "step": 0, **test}]


def write_csv_run(folder: Path, config: dict, rows: list[dict], mtime: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with (folder / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.utime(folder / "metrics.csv", (mtime, mtime))
    return folder


def write_wandb_run(folder: Path, config: dict, summary: dict, mtime: float) -> Path:
    """An online W&B run folder: files/config.yaml in W&B's {key: {value: ...}} form, files/wandb-summary.json."""
    files = folder / "files"
    files.mkdir(parents=True)
    wrapped = {
        "_wandb": {"value": {"cli_version": "0.31.0"}},
        **{key: {"value": value} for key, value in config.items()},
    }
    (files / "config.yaml").write_text(yaml.safe_dump(wrapped))
    (files / "wandb-summary.json").write_text(json.dumps({"_runtime": 12, "_wandb": {"runtime": 12}, **summary}))
    os.utime(files / "wandb-summary.json", (mtime, mtime))
    return folder


@pytest.fixture
def runs_root(tmp_path) -> Path:
    root = tmp_path / "runs"
    intent = root / "massive-roberta-base-intent"
    write_csv_run(
        intent / "version_0", encoder_config("roberta-base", ["intent"]), fit_rows(**{"test/intent_acc": 0.80}), 1000
    )
    write_csv_run(
        intent / "version_1", encoder_config("roberta-base", ["intent"]), fit_rows(**{"test/intent_acc": 0.8894}), 2000
    )
    write_csv_run(intent / "version_2", encoder_config("roberta-base", ["intent"]), fit_rows()[:2], 3000)  # no test
    write_csv_run(
        root / "massive-roberta-base-slots/version_0",
        encoder_config("roberta-base", ["slots"]),
        fit_rows(**{"test/slots_f1": 0.8341, "test/slots_exact_match": 0.7}),
        1000,
    )
    joint = {"test/intent_acc": 0.8912, "test/slots_f1": 0.8358}
    write_csv_run(
        root / "massive-roberta-base-intent+slots/version_0",
        encoder_config("roberta-base", ["intent", "slots"]),
        fit_rows(**joint),
        1000,
    )
    write_csv_run(
        root / "newsgroups-roberta-large-topic20+topic7/version_0",
        encoder_config("/models/roberta-large/", ["topic20", "topic7"]),
        fit_rows(**{"test/topic20_acc": 0.8781, "test/topic7_acc": 0.9462}),
        1000,
    )
    decoder = root / "decoder"
    instruct = "meta-llama/Meta-Llama-3-8B-Instruct"
    write_csv_run(
        decoder / "version_0", decoder_config(instruct, 0, ["intent"]), eval_rows(**{"test/intent_acc": 0.617}), 1000
    )
    write_csv_run(
        decoder / "version_1",
        decoder_config(instruct, 0, ["intent"], decoding="constrained"),
        eval_rows(**{"test/intent_acc": 0.7043}),
        1000,
    )
    write_csv_run(
        decoder / "version_2",
        decoder_config(
            "meta-llama/Meta-Llama-3-8B", 5, ["intent", "slots"], ckpt_path="runs/decoder/version_9/best.ckpt"
        ),
        eval_rows(**{"test/intent_acc": 0.897, "test/slots_f1": 0.8452, "test/slots_invalid_rate": 0.01}),
        1000,
    )
    write_csv_run(
        decoder / "version_3",
        decoder_config("meta-llama/Llama-2-7b-hf", 0, ["topic7"]),
        fit_rows(**{"test/topic7_acc": 0.9523}),
        1000,
    )
    wandb = root / "wandb"
    smol = decoder_config("HuggingFaceTB/SmolLM2-135M-Instruct", 0, ["intent"], trainer={"max_steps": 150})
    write_wandb_run(wandb / "run-20240601_120000-abc123", smol, {"train/loss": 0.5, "test/intent_acc": 0.4219}, 1000)
    # The consolidated RoBERTa-base run again, as its W&B logger saw it (finished with it): counted once.
    trained = {"train/loss": 1.5, "trainer/global_step": 100, **joint}
    write_wandb_run(
        wandb / "run-20240601_122000-ghi789", encoder_config("roberta-base", ["intent", "slots"]), trained, 1010
    )
    return root


# ---------------------------------------------------------------------------------------------------------------------
# Tables


def test_markdown_table_from_csv_and_wandb_runs(runs_root, capsys):
    main([str(runs_root)])
    captured = capsys.readouterr()
    assert captured.out == HEADER + (
        "| RoBERTa-base |  |  |  |  | 88.9 | 83.4 | 89.1 | 83.6 |\n"
        "| RoBERTa-large |  |  | 87.8 | 94.6 |  |  |  |  |\n"
        "| Llama2-7B Zero-shot w/ FT |  | 95.2 |  |  |  |  |  |  |\n"
        "| Llama3-8B-Instruct Zero-shot w/o FT |  |  |  |  | 61.7 |  |  |  |\n"
        "| Llama3-8B-Instruct Zero-shot w/o FT (constrained) |  |  |  |  | 70.4 |  |  |  |\n"
        "| Llama3-8B Five-shot w/ FT |  |  |  |  |  |  | 89.7 | 84.5 |\n"
        "| SmolLM2-135M-Instruct Zero-shot w/ FT |  |  |  |  | 42.2 |  |  |  |\n"
    )
    intent = runs_root / "massive-roberta-base-intent"
    copy, joint = runs_root / "wandb" / "run-20240601_122000-ghi789", runs_root / "massive-roberta-base-intent+slots"
    assert captured.err == (
        f"lit-clf-report: {copy}: the same run as {joint / 'version_0'} (logged twice), counted once\n"
        f"lit-clf-report: {intent / 'version_2'}: skipped, no test/intent_acc (tasks: intent)\n"
        f"lit-clf-report: RoBERTa-base, MASSIVE Dual Intent: 2 runs; using the newest, {intent / 'version_1'} "
        f"(not {intent / 'version_0'})\n"
    )


def test_csv_table(runs_root, tmp_path, capsys):
    out = tmp_path / "table3.csv"
    main(
        [
            str(runs_root / "massive-roberta-base-intent"),
            str(runs_root / "decoder"),
            "--format",
            "csv",
            "--out",
            str(out),
        ]
    )
    assert capsys.readouterr().out == ""
    assert out.read_text() == (
        f"Model,Shots,FT,Variant,{CSV_COLUMNS}\n"
        "RoBERTa-base,,w/ FT,,,,,,88.9,,,\n"
        "Llama2-7B,0,w/ FT,,,95.2,,,,,,\n"
        "Llama3-8B-Instruct,0,w/o FT,,,,,,61.7,,,\n"
        "Llama3-8B-Instruct,0,w/o FT,constrained,,,,,70.4,,,\n"
        "Llama3-8B,5,w/ FT,,,,,,,,89.7,84.5\n"
    )


def test_newest_run_wins_whatever_the_input_order(runs_root):
    folder = runs_root / "massive-roberta-base-intent"
    runs = find_runs([folder / "version_1", folder / "version_0"])
    table = build_table(runs)
    (row,) = table.rows
    assert table.cells[(row, 4)].source == str(folder / "version_1")
    assert table.value(row, 4) == pytest.approx(88.94)


def test_paper_values_beside_ours(tmp_path, capsys):
    root = tmp_path / "runs"
    write_csv_run(
        root / "a/version_0",
        encoder_config("roberta-base", ["intent", "slots"]),
        fit_rows(**{"test/intent_acc": 0.8912, "test/slots_f1": 0.8358}),
        1000,
    )
    write_csv_run(
        root / "b/version_0",
        decoder_config("meta-llama/Llama-2-7b-chat-hf", 0, ["intent"]),
        eval_rows(**{"test/intent_acc": 0.3}),
        1000,
    )
    write_csv_run(
        root / "c/version_0",
        encoder_config("sentence-transformers/all-MiniLM-L6-v2", ["intent"]),
        fit_rows(**{"test/intent_acc": 0.85}),
        1000,
    )
    main([str(root), "--paper"])
    assert capsys.readouterr().out == HEADER.replace("| Model |", "| Model (ours / paper) |") + (
        "| all-MiniLM-L6-v2 |  |  |  |  | 85.0 / - |  |  |  |\n"
        "| RoBERTa-base | - / 86.7 | - / 93.6 | - / 86.5 | - / 93.6 | - / 88.9 | - / 83.4 | 89.1 / 89.1 | 83.6 / 83.6 |\n"
        "| RoBERTa-large | - / 88.1 | - / 94.2 | - / 87.8 | - / 94.6 | - / 90.1 | - / 85.0 | - / 90.0 | - / 84.7 |\n"
        "| Llama2-7B Five-shot w/o FT | - / 0.0 | - / 0.0 | - / 0.0 | - / 0.0 | - / 35.8 | - / 4.6 | - / 7.2 | - / 7.9 |\n"
        "| Llama2-7B-Chat Zero-shot w/o FT | - / 25.1 | - / 23.8 | - / 11.4 | - / 21.8 | 30.0 / 30.3 | - / 0.0 | - / 0.0 | - / 0.0 |\n"
        "| Llama2-70B Five-shot w/o FT | - / 0.0 | - / 0.0 | - / 0.0 | - / 0.0 | - / 70.8 | - / 9.5 | - / 62.7 | - / 5.1 |\n"
        "| Llama2-70B Zero-shot w/o FT | - / 64.1 | - / 44.9 | - / 48.6 | - / 62.7 | - / 60.8 | - / 0.0 | - / 0.0 | - / 0.0 |\n"
        "| Llama2-7B Five-shot w/ FT | - / 88.2 | - / 94.6 | - / 88.1 | - / 93.9 | - / 90.3 | - / 84.0 | - / 89.8 | - / 84.1 |\n"
        "| Llama2-7B Zero-shot w/ FT | - / 89.5 | - / 95.2 | - / 89.2 | - / 94.9 | - / 90.4 | - / 82.5 | - / 89.6 | - / 83.4 |\n"
        "| Llama2-70B Five-shot w/ FT | - / 88.4 | - / 95.3 | - / 88.7 | - / 94.6 | - / 90.0 | - / 83.9 | - / 90.0 | - / 84.3 |\n"
        "| Llama2-70B Zero-shot w/ FT | - / 91.2 | - / 96.3 | - / 91.5 | - / 96.6 | - / 90.2 | - / 83.1 | - / 90.4 | - / 83.6 |\n"
        "| Llama3-8B Five-shot w/o FT | - / 0.0 | - / 0.0 | - / 0.0 | - / 0.0 | - / 69.7 | - / 2.0 | - / 38.9 | - / 5.9 |\n"
        "| Llama3-8B Zero-shot w/o FT | - / 52.2 | - / 41.2 | - / 34.1 | - / 51.6 | - / 61.7 | - / 1.6 | - / 0.0 | - / 0.0 |\n"
        "| Llama3-70B Five-shot w/o FT | - / 0.0 | - / 0.0 | - / 0.0 | - / 0.0 | - / 80.6 | - / 20.6 | - / 70.7 | - / 16.4 |\n"
        "| Llama3-70B Zero-shot w/o FT | - / 69.5 | - / 67.0 | - / 56.7 | - / 78.0 | - / 78.9 | - / 12.2 | - / 0.0 | - / 0.0 |\n"
        "| Llama3-8B Five-shot w/ FT | - / 91.1 | - / 95.9 | - / 91.0 | - / 96.1 | - / 90.6 | - / 86.2 | - / 89.7 | - / 84.5 |\n"
        "| Llama3-8B Zero-shot w/ FT | - / 91.6 | - / 96.3 | - / 90.8 | - / 96.2 | - / 90.6 | - / 85.6 | - / 90.0 | - / 85.5 |\n"
        "| Llama3-70B Five-shot w/ FT | - / 91.9 | - / 96.5 | - / 92.1 | - / 96.8 | - / 90.8 | - / 86.0 | - / 90.2 | - / 86.8 |\n"
        "| Llama3-70B Zero-shot w/ FT | - / 91.5 | - / 96.1 | - / 91.2 | - / 96.2 | - / 90.8 | - / 85.8 | - / 89.8 | - / 86.3 |\n"
        "| GPT3.5 Five-shot w/o FT | - / 0.0 | - / 0.0 | - / 0.0 | - / 0.0 | - / 64.0 | - / 2.0 | - / 73.6 | - / 21.0 |\n"
        "| GPT3.5 Zero-shot w/o FT | - / 72.9 | - / 55.1 | - / 62.3 | - / 69.6 | - / 60.7 | - / 1.8 | - / 69.6 | - / 14.2 |\n"
        "| GPT4 Five-shot w/o FT | - / 0.0 | - / 0.0 | - / 0.0 | - / 0.0 | - / 83.3 | - / 37.1 | - / 79.9 | - / 28.1 |\n"
        "| GPT4 Zero-shot w/o FT | - / 80.4 | - / 74.5 | - / 80.6 | - / 88.5 | - / 81.9 | - / 13.6 | - / 76.9 | - / 21.6 |\n"
        "| GPT4o Five-shot w/o FT | - / 0.0 | - / 0.0 | - / 0.0 | - / 0.0 | - / 82.0 | - / 18.9 | - / 81.0 | - / 39.4 |\n"
        "| GPT4o Zero-shot w/o FT | - / 77.4 | - / 73.3 | - / 73.6 | - / 84.1 | - / 62.7 | - / 14.8 | - / 0.0 | - / 0.0 |\n"
    )


def test_paper_values_in_csv_are_extra_columns(tmp_path):
    root = tmp_path / "runs"
    write_csv_run(
        root / "a/version_0", encoder_config("roberta-large", ["topic7"]), fit_rows(**{"test/topic7_acc": 0.95}), 1000
    )
    lines = to_csv(build_table(find_runs([root]), paper=True)).splitlines()
    assert lines[0].startswith(
        "Model,Shots,FT,Variant,20NG Dual 20-class,20NG Dual 20-class (paper),20NG Dual 7-class,"
    )
    assert lines[2] == "RoBERTa-large,,w/ FT,,,88.1,95.0,94.2,,87.8,,94.6,,90.1,,85.0,,90.0,,84.7"
    assert lines[-1] == "GPT4o,0,w/o FT,,,77.4,,73.3,,73.6,,84.1,,62.7,,14.8,,0.0,,0.0"


def test_wandb_export_csv(tmp_path, capsys):
    export = tmp_path / "wandb_export.csv"
    columns = [
        "Name", "State", "Created", "model.class_path", "model.init_args.backbone",
        "model.init_args.shots", "data.init_args.tasks", "ckpt_path", "model", "train/loss", "test/intent_acc",
        "test/slots_f1", "test/topic20_acc",
    ]  # fmt: skip
    llama70 = {"class_path": DECODER, "init_args": {"backbone": "meta-llama/Llama-2-70b-chat-hf", "shots": 0}}
    rows = [
        ["rb-old", "finished", "2024-06-01T10:00:00.000Z", ENCODER, "roberta-base", "", '["intent"]', "", "", 0.3, 0.881, "", ""],
        ["rb-new", "finished", "2024-06-02T10:00:00Z", ENCODER, "roberta-base", "", '["intent"]', "", "", 0.2, 0.8894, "", ""],
        ["l3-5shot", "finished", "2024-06-03T10:00:00Z", DECODER, "meta-llama/Meta-Llama-3-8B", 5,
         '["intent", "slots"]', "runs/x/best.ckpt", "", "", 0.9062, 0.8617, ""],
        ["l2-70-chat", "finished", "2024-06-04T10:00:00Z", "", "", "", "[topic20]", "", json.dumps(llama70), "", "", "", 0.641],
    ]  # fmt: skip
    with export.open("w", newline="") as file:
        csv.writer(file).writerows([columns, *rows])
    main(["--wandb-export", str(export), "--format", "csv"])
    captured = capsys.readouterr()
    assert captured.out == (
        f"Model,Shots,FT,Variant,{CSV_COLUMNS}\n"
        "RoBERTa-base,,w/ FT,,,,,,88.9,,,\n"
        "Llama2-70B-Chat,0,w/o FT,,64.1,,,,,,,\n"
        "Llama3-8B,5,w/ FT,,,,,,,,90.6,86.2\n"
    )
    assert captured.err == (
        f"lit-clf-report: RoBERTa-base, MASSIVE Dual Intent: 2 runs; using the newest, {export}, line 3 (rb-new) "
        f"(not {export}, line 2 (rb-old))\n"
    )


def test_export_rows_without_created_later_row_wins(tmp_path):
    export = tmp_path / "export.csv"
    export.write_text(
        "Name,model.init_args.backbone,data.init_args.tasks,test/intent_acc\n"
        'a,roberta-base,"[""intent""]",0.5\n'
        'b,roberta-base,"[""intent""]",0.6\n'
    )
    table = build_table(read_wandb_export(export))
    (row,) = table.rows
    assert row == Row("RoBERTa-base", fine_tuned=False) and table.value(row, 4) == pytest.approx(60.0)


def test_offline_wandb_run_is_read_from_its_log(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = decoder_config("meta-llama/Meta-Llama-3-8B-Instruct", 0, ["slots"])
    run = wandb.init(mode="offline", dir=tmp_path, project="lit_clf", config=config)
    run.log({"test/slots_f1": 0.122, "test/slots_invalid_rate": 0.5})
    run.finish()
    wandb.teardown()  # what process exit does: the W&B service writes out the run log and stops
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    assert not (folder / "files" / "wandb-summary.json").exists()  # offline runs keep everything in the log
    table = build_table(find_runs([tmp_path]))
    assert to_markdown(table) == HEADER + "| Llama3-8B-Instruct Zero-shot w/o FT |  |  |  |  |  | 12.2 |  |  |\n"


# ---------------------------------------------------------------------------------------------------------------------
# Errors: one line naming the file


def _error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.rstrip("\n")


def test_folder_without_runs(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert _error([str(tmp_path / "empty")], capsys).startswith(
        f"lit-clf-report: error: {tmp_path / 'empty'}: no runs found (expected config.yaml + metrics.csv"
    )
    assert (
        _error([str(tmp_path / "missing")], capsys) == f"lit-clf-report: error: {tmp_path / 'missing'}: no such folder"
    )


def test_malformed_metrics_csv(tmp_path, capsys):
    run = write_csv_run(
        tmp_path / "r", encoder_config("roberta-base", ["intent"]), fit_rows(**{"test/intent_acc": "x"}), 1
    )
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'metrics.csv'}, line 4: test/intent_acc='x' is not a number"
    )
    (run / "metrics.csv").write_text("")
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'metrics.csv'}: empty; expected a CSVLogger header (step, epoch, metric keys)"
    )
    (run / "config.yaml").unlink()
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'metrics.csv'}: no config.yaml beside it (expected a lit-clf run folder)"
    )


def test_malformed_config(tmp_path, capsys):
    run = write_csv_run(
        tmp_path / "r", encoder_config("roberta-base", ["intent"]), fit_rows(**{"test/intent_acc": 1}), 1
    )
    (run / "config.yaml").write_text("model: {class_path: [unclosed\n")
    assert _error([str(tmp_path)], capsys).startswith(
        f"lit-clf-report: error: {run / 'config.yaml'}, line 2: not valid YAML"
    )
    (run / "config.yaml").write_text("- a list\n")
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'config.yaml'}: expected a YAML mapping (a resolved lit-clf config), got list"
    )
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"class_path": ENCODER, "init_args": {}}}))
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'config.yaml'}: no data.init_args.tasks (expected a resolved lit-clf config)"
    )
    (run / "config.yaml").write_text(yaml.safe_dump(decoder_config("", 0, ["intent"])))
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'config.yaml'}: no model.init_args.backbone (expected a resolved lit-clf config)"
    )
    (run / "config.yaml").write_text(yaml.safe_dump(decoder_config("m", "five", ["intent"])))
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'config.yaml'}: model.init_args.shots should be a number, got 'five'"
    )


def test_malformed_wandb_files(tmp_path, capsys):
    run = write_wandb_run(tmp_path / "wandb/run-1", encoder_config("roberta-base", ["intent"]), {}, 1)
    (run / "files/wandb-summary.json").write_text('{"test/intent_acc": ')
    assert _error([str(tmp_path)], capsys) == (
        f"lit-clf-report: error: {run / 'files/wandb-summary.json'}, line 1: not valid JSON (Expecting value)"
    )


def test_damaged_wandb_log(tmp_path, capsys):
    folder = tmp_path / "wandb" / "offline-run-20240601_120000-abc"
    folder.mkdir(parents=True)
    (folder / "run-abc.wandb").write_bytes(b":W&B\xe1\xbe\x00" + b"\x00" * 40)
    assert _error([str(tmp_path)], capsys).startswith(f"lit-clf-report: error: {folder / 'run-abc.wandb'}: ")


def test_malformed_wandb_export(tmp_path, capsys):
    export = tmp_path / "export.csv"
    export.write_text(
        "Name,Created,model.init_args.backbone,data.init_args.tasks,test/intent_acc\nr,yesterday,roberta-base,[intent],0.9\n"
    )
    assert _error(["--wandb-export", str(export)], capsys) == (
        f"lit-clf-report: error: {export}, line 2: Created='yesterday' is not an ISO date and time"
    )
    export.write_text("Name,Created\n")
    assert _error(["--wandb-export", str(export)], capsys) == (
        f"lit-clf-report: error: {export}: no runs (expected a W&B runs export with a header and one row per run)"
    )
    assert _error(["--wandb-export", str(tmp_path / "nope.csv")], capsys) == (
        f"lit-clf-report: error: {tmp_path / 'nope.csv'}: no such file"
    )


def test_no_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "give at least one RUN_DIR_OR_ROOT or --wandb-export CSV" in capsys.readouterr().err


def test_help_documents_the_export_columns(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "model.init_args.backbone" in out and "data.init_args.tasks" in out and "Created" in out
    assert "--paper" in out and "--wandb-export CSV" in out


def test_console_script_and_module_entry_point():
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    scripts = dict(line.split(" = ") for line in setup["options.entry_points"]["console_scripts"].strip().splitlines())
    module, function = scripts["lit-clf-report"].split(":")
    assert getattr(importlib.import_module(module), function) is main
    result = subprocess.run(
        [sys.executable, "-m", "lit_clf.report", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: lit-clf-report")


def test_the_cost_each_run_recorded_is_shown_beside_the_table(tmp_path):
    rows = fit_rows(**{"test/intent_acc": 0.9})
    rows[-1].update({"cost/fit_wall_s": 5400.0, "cost/fit_device_hours": 1.5, "cost/test_wall_s": 1800.0})
    rows[-1].update({"cost/test_device_hours": 0.5, "cost/fit_energy_kwh": 0.25, "cost/test_energy_kwh": 0.05})
    folder = write_csv_run(tmp_path / "runs" / "a", encoder_config("roberta-base", ["intent"]), rows, 1000)
    (folder / "hparams.yaml").write_text("backbone: roberta-base\ncost/device: 1x NVIDIA H100 80GB HBM3\n")
    write_csv_run(
        tmp_path / "runs" / "b", encoder_config("roberta-base", ["slots"]), fit_rows(**{"test/slots_f1": 0.8}), 1000
    )
    text = to_markdown(build_table(find_runs([tmp_path / "runs"])))
    table, cost = text.split("\n\n")
    assert cost.splitlines() == [
        "| Run | Row | Cells | Device | Wall h | Device-hours | Energy kWh |",
        "|---|---|---|---|---:|---:|---:|",
        "| a | RoBERTa-base | MASSIVE Dual Intent | 1x NVIDIA H100 80GB HBM3 | 2.00 | 2.00 | 0.300 |",
    ]  # run b recorded no cost: not listed


def test_a_resumed_test_costs_the_time_its_read_back_answers_took(tmp_path):
    rows = fit_rows(**{"test/intent_acc": 0.9})  # the last process: 0.5 h on 2 devices; 1.5 h of answers read back
    rows[-1].update({"cost/test_wall_s": 1800.0, "cost/test_device_hours": 1.0, "cost/test_read_back_s": 5400.0})
    folder = write_csv_run(tmp_path / "runs" / "a", encoder_config("roberta-base", ["intent"]), rows, 1000)
    (folder / "hparams.yaml").write_text("cost/device: 2x NVIDIA H100 80GB HBM3\n")
    text = to_markdown(build_table(find_runs([tmp_path / "runs"])))
    assert (
        text.splitlines()[-1]
        == "| a | RoBERTa-base | MASSIVE Dual Intent | 2x NVIDIA H100 80GB HBM3 | 2.00 | 4.00 |  |"
    )


def test_update_replaces_only_the_marked_part_of_a_document(runs_root, tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text(
        "# Results\n\nintro\n<!-- lit-clf-report: begin -->\nold table\n<!-- lit-clf-report: end -->\nafter\n"
    )
    from lit_clf.report.cli import main

    main([str(runs_root), "--update", str(doc)])
    text = doc.read_text()
    expected = to_markdown(build_table(find_runs([runs_root])))
    assert (
        text == f"# Results\n\nintro\n<!-- lit-clf-report: begin -->\n{expected}<!-- lit-clf-report: end -->\nafter\n"
    )
    main([str(runs_root), "--update", str(doc)])
    assert doc.read_text() == text  # regenerating changes nothing
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit) as exit_:
        main([str(runs_root), "--update", str(doc)])
    assert exit_.value.code == 2 and doc.read_text() == "no markers\n"


def test_runs_on_other_datasets_get_their_own_table(tmp_path):
    config = encoder_config("all-MiniLM-L6-v2", ["ner"])
    config["data"]["class_path"] = "lit_clf.data.Wnut17DataModule"
    write_csv_run(
        tmp_path / "runs" / "wnut", config, fit_rows(**{"test/ner_f1": 0.4321, "test/ner_exact_match": 0.5}), 1000
    )
    write_csv_run(
        tmp_path / "runs" / "b", encoder_config("roberta-base", ["slots"]), fit_rows(**{"test/slots_f1": 0.8}), 1000
    )
    table = build_table(find_runs([tmp_path / "runs"]))
    assert not any("wnut" in note for note in table.notes)  # not "skipped"
    text = to_markdown(table)
    assert text.split("\n\n")[1].splitlines() == [
        "| Run | Model | Dataset | Test scores |",
        "|---|---|---|---|",
        "| wnut | all-MiniLM-L6-v2 | wnut17 | ner_f1 43.2 |",
    ]


def test_a_dataset_class_that_does_not_import_is_named_by_its_class(tmp_path):
    for name, class_path in [
        ("mine", "my_project.data.ReviewsDataModule"),
        ("theirs", "lit_clf.data.NoSuchDataModule"),
    ]:
        config = encoder_config(f"{name}-MiniLM", ["ner"])
        config["data"]["class_path"] = class_path
        write_csv_run(tmp_path / "runs" / name, config, fit_rows(**{"test/ner_f1": 0.5}), 1000)
    rows = to_markdown(build_table(find_runs([tmp_path / "runs"]))).split("\n\n")[1].splitlines()[2:]
    assert sorted(rows) == [
        "| mine | mine-MiniLM | Reviews | ner_f1 50.0 |",
        "| theirs | theirs-MiniLM | NoSuch | ner_f1 50.0 |",
    ]


def test_a_decoder_with_heads_is_its_own_row():
    from lit_clf.report.runs import run_from_config

    config = encoder_config("HuggingFaceTB/SmolLM2-135M-Instruct", ["intent", "slots"])
    config["model"]["init_args"]["pooling"] = "last"
    run = run_from_config(config, {"test/intent_acc": 0.8, "step": 10}, "a", "a/config.yaml", 0.0)
    assert run.row.label == "SmolLM2-135M-Instruct (heads, last pooling)" and not run.row.decoder
    config["model"]["init_args"]["pooling"] = "auto"  # an encoder's default: the paper's row
    assert run_from_config(config, {"step": 10}, "a", "a/config.yaml", 0.0).row.label == "SmolLM2-135M-Instruct"


def test_a_run_trained_on_a_subset_of_the_training_split_is_its_own_row():
    from lit_clf.report.runs import run_from_config

    config = decoder_config("HuggingFaceTB/SmolLM2-135M-Instruct", 0, ["intent"])
    config["model"]["init_args"]["decoding"] = "constrained"
    config["data"]["init_args"]["max_train_examples"] = 4096
    trained = run_from_config(config, {"test/intent_acc": 0.8, "step": 256}, "a", "a/config.yaml", 0.0)
    assert trained.row.label == "SmolLM2-135M-Instruct Zero-shot w/ FT (constrained, 4,096 train examples)"
    # w/o FT the training subset does not matter: the released model's row
    released = run_from_config(config, {"test/intent_acc": 0.1}, "b", "b/config.yaml", 0.0)
    assert released.row.label == "SmolLM2-135M-Instruct Zero-shot w/o FT (constrained)"
    config["data"]["init_args"]["max_train_examples"] = None  # the full split: the paper's setting
    full = run_from_config(config, {"test/intent_acc": 0.85, "step": 1440}, "c", "c/config.yaml", 0.0)
    assert full.row.label == "SmolLM2-135M-Instruct Zero-shot w/ FT (constrained)"


def test_a_consolidated_decoder_trained_with_the_task_weighted_loss_is_its_own_row():
    from lit_clf.report.runs import run_from_config

    def label(tasks, weighting, fine_tuned=True):
        config = decoder_config("HuggingFaceTB/SmolLM2-135M-Instruct", 0, tasks, decoding="constrained")
        config["model"]["init_args"]["loss_weighting"] = weighting
        metrics = {f"test/{task}_{'f1' if task == 'slots' else 'acc'}": 0.5 for task in tasks}
        return run_from_config(config, metrics | ({"step": 256} if fine_tuned else {}), "a", "a/c.yaml", 0.0).row.label

    paper = "SmolLM2-135M-Instruct Zero-shot w/ FT (constrained)"
    assert (
        label(["intent", "slots"], "task") == "SmolLM2-135M-Instruct Zero-shot w/ FT (constrained, task-weighted loss)"
    )
    assert label(["intent", "slots"], "token") == label(["intent", "slots"], None) == paper
    assert label(["intent"], "task") == paper  # one task: the same loss as the paper's
    assert (
        label(["intent", "slots"], "task", fine_tuned=False) == "SmolLM2-135M-Instruct Zero-shot w/o FT (constrained)"
    )


def test_a_run_with_its_own_prompt_file_is_its_own_row(tmp_path):
    from lit_clf.report.runs import run_from_config

    def label(tasks, prompt_file):
        config = decoder_config("HuggingFaceTB/SmolLM2-135M-Instruct", 0, tasks, decoding="constrained")
        config["model"]["init_args"]["prompt_file"] = prompt_file and str(prompt_file)
        metrics = {f"test/{task}_{'f1' if task == 'slots' else 'acc'}": 0.5 for task in tasks} | {"step": 256}
        return run_from_config(config, metrics, "a", "a/config.yaml", 0.0).row.label

    row = "SmolLM2-135M-Instruct Zero-shot w/ FT (constrained, {})"
    # the file's variant names the row, so a dual and a consolidated prompt with one variant share it
    dual, joint = tmp_path / "slots-inline.yaml", tmp_path / "joint-inline.yaml"
    dual.write_text("variant: inline slot answer\ntoken_format: inline\nprompt: '{text}'\n")
    joint.write_text("variant: ' inline slot answer '\nprompt: '{text}'\n")
    assert label(["slots"], dual) == label(["intent", "slots"], joint) == row.format("inline slot answer")
    # no variant, a plain-text prompt, a missing or malformed file: the file's name
    plain, text, broken = tmp_path / "mine.yaml", tmp_path / "mine2.txt", tmp_path / "bad.yaml"
    plain.write_text("prompt: '{text}'\n")
    text.write_text("variant: not read from a text prompt {text}")
    broken.write_text("prompt: [unclosed\n")
    assert label(["slots"], plain) == row.format("prompt mine")
    assert label(["slots"], text) == row.format("prompt mine2")
    assert label(["slots"], broken) == row.format("prompt bad")
    assert label(["slots"], tmp_path / "gone.yaml") == row.format("prompt gone")
    assert label(["slots"], None) == "SmolLM2-135M-Instruct Zero-shot w/ FT (constrained)"  # the paper's prompt


def test_api_model_runs_fill_the_papers_gpt_rows():
    from lit_clf.report.runs import run_from_config

    config = decoder_config("gpt-4o-2024-08-06", 5, ["intent"])
    config["model"]["class_path"] = "lit_clf.api.ChatApiModule"
    run = run_from_config(config, {"test/intent_acc": 0.8, "step": 0}, "a", "a/config.yaml", 0.0)
    assert run.row.label == "GPT4o Five-shot w/o FT" and run.row.decoder


def test_a_run_without_a_tasks_option_is_named_by_its_scores():
    from lit_clf.report.runs import run_from_config

    config = encoder_config("sentence-transformers/all-MiniLM-L6-v2", ["x"])
    config["data"] = {"class_path": "lit_clf.data.Wnut17DataModule", "init_args": {"tasks": None}}
    metrics = {"test/ner_f1": 0.43, "test/ner_exact_match": 0.5, "val/ner_f1": 0.5, "step": 5}
    assert run_from_config(config, metrics, "a", "a/config.yaml", 0.0).tasks == ("ner",)


def test_the_reports_families_are_the_classes_own():
    """``report.identity.GENERATIVE`` (read without importing torch) says what each class's ``generative`` says."""
    import importlib

    from lit_clf.report.identity import GENERATIVE, is_generative

    for path, generative in GENERATIVE.items():
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name).generative is generative, path
    assert is_generative("my_pkg.MyEncoderModule", None) is False  # not told by its name any more
    assert is_generative("my_pkg.MyPromptedModule", 5) is True


def test_runs_with_equal_scores_are_twins_only_when_they_are_copies_of_one_run():
    """A CSV folder and its W&B copy (same row, tasks, subset, scores, finished together) count once, with a note;
    a newer run that happens to score the same (all 0.0) on another subset is a run of its own and wins the cell."""
    from lit_clf.report.runs import Run

    row = Row("SmolLM2-135M", decoder=True, shots=0, fine_tuned=False)
    scores = {"test/intent_acc": 0.0}
    csv_run = Run("runs/r/version_0", row, ("intent",), scores, time=1000.0, subset=16)
    wandb_copy = Run("runs/wandb/run-1", row, ("intent",), scores, time=1030.0, subset=16)
    later = Run("runs/r/version_1", row, ("intent",), scores, time=9000.0, subset=64)
    table = build_table([csv_run, wandb_copy, later])
    (kept_row,) = table.rows
    assert table.cells[(kept_row, 4)].source == "runs/r/version_1"  # the newer, larger run
    assert "runs/wandb/run-1: the same run as runs/r/version_0 (logged twice), counted once" in table.notes
    assert any("2 runs; using the newest, runs/r/version_1 (not runs/r/version_0)" in note for note in table.notes)


def test_api_runs_with_structured_output_have_a_row_of_their_own(tmp_path):
    api = "lit_clf.api.ChatApiModule"
    for version, structured in ((0, False), (1, True)):
        config = decoder_config("gpt-4o-2024-08-06", 0, ["intent"])
        config["model"]["class_path"] = api
        config["model"]["init_args"]["structured_output"] = structured
        write_csv_run(
            tmp_path / f"api/version_{version}", config, eval_rows(**{"test/intent_acc": 0.5 + version / 10}), 1000
        )
    table = build_table(find_runs([tmp_path]))
    assert sorted(row.variant for row in table.rows) == ["", "structured output"]
