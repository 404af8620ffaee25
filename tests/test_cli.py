"""The lit-clf command: help, every config in configs/, and a fit smoke run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
FRAGMENTS = ("decoder", "trainer")  # composed with -c a.yaml -c b.yaml ...; tested in tests/models/test_decoder.py
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.relative_to(CONFIG_DIR).parts[0] not in FRAGMENTS)
ENCODER_CONFIGS = [c for c in CONFIGS if "EncoderSeqTokenModule" in c.read_text()]


def test_help_documents_options_from_docstrings(capsys):
    run_cli(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--test_after_fit" in out and "--predictions.output_path" in out
    words = " ".join(out.split())  # the help wraps to the terminal's width
    assert "--checkpoint.monitor" in out and "Unset: the first task's main validation metric" in words


def test_model_and_data_help_show_docstrings(capsys):
    run_cli(["fit", "--model.help", "lit_clf.models.EncoderSeqTokenModule"])
    out = capsys.readouterr().out
    assert "Hub id or local folder of any ``AutoModel`` encoder" in out
    run_cli(["fit", "--data.help", "lit_clf.data.MassiveDataModule"])
    out = capsys.readouterr().out
    assert "Batch examples of similar token length together" in out and "--data.locale" in out


def test_console_script_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "lit_clf", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "fit" in result.stdout and "predict" in result.stdout


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_print_config(config, capsys):
    run_cli(["fit", "--config", str(config), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed_everything"] == 42
    assert printed["model"]["class_path"].startswith("lit_clf.models.")
    assert "tasks" not in printed["model"]["init_args"]  # linked from the data, never in YAML


def tiny_overrides(tmp_path: Path, backbone: Path, data_dir: Path) -> list[str]:
    return [
        f"--model.init_args.backbone={backbone}",
        "--model.init_args.pretrained=false",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.max_examples=8",
        "--data.init_args.batch_size=4",
        "--data.init_args.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]


@pytest.mark.parametrize("config", ENCODER_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_encoder_config_trains_with_a_tiny_backbone(config, tmp_path, tiny_roberta_dir, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs log to ./runs
    run_cli(["fit", "--config", str(config), *tiny_overrides(tmp_path, tiny_roberta_dir, shared_data)])
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert metrics, "the CSV logger wrote no metrics"
    header = metrics[0].read_text().splitlines()[0]
    first_task = yaml.safe_load(config.read_text())["data"]["init_args"]["tasks"][0]
    assert f"test/{first_task}_" in header  # test_after_fit ran on the best checkpoint
    assert list(tmp_path.rglob("best.ckpt"))


def test_test_and_predict_from_checkpoint(tmp_path, tiny_roberta_dir, shared_data, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/massive/minilm-intent.yaml")
    overrides = tiny_overrides(tmp_path, tiny_roberta_dir, shared_data)
    run_cli(["fit", "--config", config, *overrides, "--data.init_args.tasks=[intent, slots]"])
    (ckpt,) = tmp_path.rglob("best.ckpt")
    out = tmp_path / "preds.jsonl"
    run_cli(
        [
            "predict",
            "--config",
            config,
            *overrides,
            f"--ckpt_path={ckpt}",
            f"--predictions.output_path={out}",
            "--data.init_args.tasks=[intent, slots]",
        ]
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8
    assert set(rows[0]) == {"id", "text", "intent", "slots"}
    assert len(rows[0]["slots"]["pred"]) == len(rows[0]["text"].split()) == len(rows[0]["slots"]["gold"])
    assert len(rows[0]["intent"]["top"]) == 3


def test_missing_data_is_one_line_error(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "lit_clf",
        "fit",
        "--config",
        "configs/massive/minilm-intent.yaml",
        f"--data.init_args.data_dir={tmp_path}",
        "--data.init_args.download=false",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("lit-clf: error:")]
    assert "MASSIVE en-US not found" in line and str(tmp_path) in line and "LIT_CLF_DATA" in line
    assert "Traceback" not in result.stderr
