"""Every W&B sweep file: valid structure, and the agent's exact command parses and trains one step."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps import utils as sweep_utils

from tests.helpers import REPO, run_cli

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
METHODS = {"grid", "random", "bayes"}
DISTRIBUTIONS = {"uniform", "log_uniform_values", "int_uniform", "q_uniform", "normal"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def sample(spec: dict, rng: random.Random):
    """One parameter value drawn the way a sweep method may draw it."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    low, high = spec["min"], spec["max"]
    if spec["distribution"] == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if spec["distribution"] == "int_uniform":
        return rng.randint(low, high)
    return rng.uniform(low, high)


def agent_command(sweep: dict, params: dict) -> list[str]:
    """The argv `wandb agent` runs (wandb_agent.Agent._command_run, with the agent's own helpers)."""
    command = sweep_utils.create_sweep_command(sweep["command"])
    variables = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    variables.update(interpreter=["python"], program=[sweep["program"]], env=["/usr/bin/env"])
    argv: list[str] = []
    for part in map(str, command):
        argv += variables.get(part[2:-1]) or [] if part.startswith("${") and part.endswith("}") else [part]
    return argv


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_file_is_valid(path):
    sweep = load(path)
    assert sweep["method"] in METHODS
    assert sweep["metric"]["goal"] in {"minimize", "maximize"}
    assert sweep["metric"]["name"].startswith("val/")  # a key lit_clf logs on the validation set
    assert "${args}" in sweep["command"] and sweep["command"][:3] == ["${env}", "lit-clf", "fit"]
    for name, spec in sweep["parameters"].items():
        assert name.split(".")[0] in {"model", "data", "trainer"}, name
        kinds = {"value", "values", "distribution"} & set(spec)
        assert len(kinds) == 1, f"{path.name}: {name} needs one of value, values, distribution"
        if "distribution" in spec:
            assert sweep["method"] != "grid" and spec["distribution"] in DISTRIBUTIONS
            assert spec["min"] < spec["max"]
    for part in sweep["command"]:
        if part.startswith("configs/"):
            assert (REPO / part).is_file(), f"{path.name}: {part} does not exist"


def tiny_args(tmp_path, sweep: dict, tiny_encoder: Path, tiny_decoder: Path, data: Path) -> list[str]:
    decoder = any("decoder" in part for part in sweep["command"])
    model = (
        [f"--model.init_args.backbone={tiny_decoder}", "--model.init_args.max_length=2048"]
        if decoder
        else [f"--model.init_args.backbone={tiny_encoder}"]
    )
    return [
        *model,
        "--model.init_args.pretrained=false",
        f"--data.init_args.data_dir={data}",
        "--data.init_args.max_examples=8",
        "--data.init_args.num_workers=0",
        "--trainer.max_steps=1",
        "--trainer.max_epochs=1",
        "--trainer.val_check_interval=null",
        "--trainer.precision=32-true",
        "--trainer.logger=false",
        "--test_after_fit=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_agent_command_parses_and_trains_one_step(
    path, tmp_path, monkeypatch, tiny_roberta_dir, tiny_smollm_dir, shared_data
):
    sweep = load(path)
    rng = random.Random(path.name)
    params = {name: sample(spec, rng) for name, spec in sweep["parameters"].items()}
    argv = agent_command(sweep, params)
    assert argv[:3] == ["/usr/bin/env", "lit-clf", "fit"]
    assert [f"--{k}={v}" for k, v in params.items()] == argv[-len(params) :]
    monkeypatch.chdir(REPO)  # the agent runs from the repository root: config paths are relative
    run_cli(argv[2:] + ["--print_config"])
    monkeypatch.chdir(tmp_path)
    absolute = [str(REPO / a) if a.startswith("configs/") else a for a in argv[2:]]
    run_cli(absolute + tiny_args(tmp_path, sweep, tiny_roberta_dir, tiny_smollm_dir, shared_data))
