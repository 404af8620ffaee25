"""lit_clf.report.wandb_files: an offline W&B run read back from its run-<id>.wandb log, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_clf.report.wandb_files import read_wandb_run


def test_offline_run_is_read_back(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = {"model": {"init_args": {"backbone": "roberta-base"}}, "seed_everything": 42}
    run = wandb.init(mode="offline", dir=tmp_path, project="lit_clf", name="r", tags=["massive"], config=config)
    run.log({"val/intent_acc": 0.5})
    run.log({"val/intent_acc": 0.75, "test/intent_acc": 0.7})
    run.finish()
    wandb.teardown()  # what process exit does: the W&B service writes out the run log and stops
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    log = read_wandb_run(folder)
    assert (log.name, log.tags) == ("r", ["massive"])
    assert log.config["model"] == {"init_args": {"backbone": "roberta-base"}} and log.config["seed_everything"] == 42
    assert log.summary["val/intent_acc"] == 0.75 and log.summary["test/intent_acc"] == 0.7
    assert [row["val/intent_acc"] for row in log.history] == [0.5, 0.75]


def test_read_wandb_run_needs_a_run_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no run-\\*.wandb file"):
        read_wandb_run(tmp_path)
