"""W&B logging end to end (offline mode, no account), read back from the run's own files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import wandb
import yaml

from lit_clf.report.identity import RunFacts, run_facts
from lit_clf.report.wandb_files import read_wandb_run
from tests.helpers import compose_encoder, encoder_overrides, run_cli


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    wandb.teardown()  # the per-process W&B service keeps the settings of earlier runs (their folders)


def test_fit_and_test_write_a_complete_wandb_run(offline_wandb, tmp_path, tiny_roberta_dir, shared_data):
    config = compose_encoder("roberta-base", "massive-joint")  # the paper row: logs to W&B and CSV
    args = ["fit", *config, *encoder_overrides(tmp_path, tiny_roberta_dir, shared_data)]
    run_cli([*args, "--throughput.log_every_n_steps=1", "--trainer.log_every_n_steps=1"])
    wandb.finish()
    wandb.teardown()  # what process exit does for `lit-clf`: the W&B service writes out the run log and stops
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    log = read_wandb_run(run_dir)

    # the whole resolved CLI config, not only the model's hyperparameters
    assert log.config["model"]["init_args"]["backbone"] == str(tiny_roberta_dir)
    assert log.config["data"]["init_args"]["tasks"] == ["intent", "slots"]
    assert log.config["trainer"]["max_epochs"] == 1
    assert log.name == f"massive-{tiny_roberta_dir.name}-intent+slots-ft"
    csv_run = tmp_path / "runs" / log.name / "version_0"  # the CSV copy carries the same name
    assert (csv_run / "metrics.csv").is_file()
    saved = yaml.safe_load((csv_run / "config.yaml").read_text())
    assert saved["trainer"]["logger"][0]["init_args"]["name"] == log.name
    assert {"massive", "intent", "slots", "FT", "consolidated"} <= set(log.tags)

    keys = {key for row in log.history for key in row}
    assert {"train/loss", "train/samples_per_s", "train/tokens_per_s", "val/intent_acc", "val/slots_f1"} <= keys
    assert {"test/intent_acc", "test/slots_f1", "test/slots_exact_match"} <= keys
    assert "test/intent_confusion_table" in keys or any(k.startswith("test/intent_confusion") for k in keys)

    (table_file,) = (run_dir / "files" / "media" / "table" / "test").glob("predictions_*.table.json")
    table = json.loads(table_file.read_text())
    assert len(table["data"]) == 8  # one row per test example (max_examples=8)
    assert table["columns"][:2] == ["id", "text"] and "slots_pred" in table["columns"]


def test_run_facts_from_config():
    config = {
        "model": {"init_args": {"backbone": "meta-llama/Meta-Llama-3-8B-Instruct", "shots": 5}},
        "data": {"init_args": {"tasks": ["topic20"]}},
        "ckpt_path": None,
    }
    facts = run_facts(config, "newsgroups", "test")
    assert facts == RunFacts("newsgroups", "Meta-Llama-3-8B-Instruct", ("topic20",), 5, False)
    assert facts.name == "newsgroups-Meta-Llama-3-8B-Instruct-topic20-5shot-noft"
    assert facts.tags[-2:] == ["dual", "5-shot"]


def test_throughput_leaves_out_a_validation_inside_the_epoch(monkeypatch):
    """val_check_interval validates mid-epoch: its time must not count as training time."""
    import torch

    from lit_clf.run import tracking
    from lit_clf.run.tracking import ThroughputLogger

    clock = iter([0.0, 10.0, 70.0, 80.0, 80.0])  # train start, validation 10 s -> 70 s, window end, next start
    monkeypatch.setattr(tracking.time, "perf_counter", lambda: next(clock))
    logged = []
    module = SimpleNamespace(log_dict=lambda metrics, **_: logged.append(metrics))
    trainer = SimpleNamespace(world_size=1)
    batch = {"input_ids": torch.zeros(4, 5, dtype=torch.long), "attention_mask": torch.ones(4, 5)}
    logger = ThroughputLogger(log_every_n_steps=2)
    logger.on_train_batch_start(trainer, module, batch, 0)
    logger.on_train_batch_end(trainer, module, None, batch, 0)
    logger.on_validation_start(trainer, module)
    logger.on_validation_end(trainer, module)
    logger.on_train_batch_start(trainer, module, batch, 1)
    logger.on_train_batch_end(trainer, module, None, batch, 1)
    assert logged == [{"train/samples_per_s": 8 / 20.0, "train/tokens_per_s": 40 / 20.0}]
