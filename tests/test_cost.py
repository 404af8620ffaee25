"""RunCost: each completed stage's wall time, device-hours and device reach the run's log."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import torch
import yaml

from lit_clf.run import cost
from lit_clf.run.cost import RunCost
from tests.helpers import REPO, encoder_overrides, run_cli


def test_fit_and_test_costs_are_logged_beside_the_scores(tmp_path, tiny_roberta_dir, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/massive/minilm-intent.yaml")
    run_cli(["fit", "--config", config, *encoder_overrides(tmp_path, tiny_roberta_dir, shared_data)])
    (metrics_file,) = tmp_path.rglob("metrics.csv")
    rows = list(csv.DictReader(metrics_file.open()))
    last = {key: float(v) for row in rows for key, v in row.items() if v not in ("", None)}
    for stage in ("fit", "test"):
        wall = last[f"cost/{stage}_wall_s"]
        assert 0 < wall < 600
        assert abs(last[f"cost/{stage}_device_hours"] - wall / 3600) < 1e-9  # one CPU machine
        assert f"cost/{stage}_energy_kwh" not in last  # no GPU: no energy reading, not a zero
    assert 0 < last["cost/fit_train_s"] < last["cost/fit_wall_s"]  # the training loop, validation left out
    # The test stage's cost is logged after its scores, the fit's before the test starts.
    columns = [[key for key, v in row.items() if v] for row in rows]
    fit_row = next(i for i, c in enumerate(columns) if "cost/fit_wall_s" in c)
    assert fit_row < next(i for i, c in enumerate(columns) if "test/intent_acc" in c)
    hparams = yaml.safe_load((metrics_file.parent / "hparams.yaml").read_text())
    assert hparams["cost/device"].startswith("CPU ") and hparams["cost/device"].endswith(" threads")


def test_cost_logging_can_be_switched_off(tmp_path, tiny_roberta_dir, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/massive/minilm-intent.yaml")
    run_cli(
        ["fit", "--config", config, *encoder_overrides(tmp_path, tiny_roberta_dir, shared_data), "--cost.enabled=false"]
    )
    (metrics_file,) = tmp_path.rglob("metrics.csv")
    assert "cost/" not in metrics_file.read_text()


def test_the_device_is_read_from_the_strategy_before_the_module_moves(monkeypatch):
    """Lightning calls ``setup`` while the module is still on the CPU: a GPU fit must name and meter the GPU."""
    read, logged = [], []
    monkeypatch.setattr(cost, "_energy_mj", lambda device: read.append(device) or 1000.0)
    monkeypatch.setattr(cost, "device_name", lambda trainer, device: f"1x {device.type}")
    logger = SimpleNamespace(log_hyperparams=logged.append)
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), is_global_zero=True)
    trainer.loggers = [logger]
    RunCost().setup(trainer, SimpleNamespace(device=torch.device("cpu")), "fit")  # the module: still on the CPU
    assert read == [torch.device("cuda", 0)] and logged == [{"cost/device": "1x cuda"}]
