"""The notebooks: stored without outputs, and run top to bottom (nbclient) on a tiny real run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, encoder_overrides, run_cli

NOTEBOOKS = REPO / "notebooks"
CONFIG = str(REPO / "configs/massive/minilm-joint.yaml")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_without_outputs_and_parameterized_by_env(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: strip the outputs"
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    first = "".join(code[0]["source"])
    assert "LIT_CLF_RUN_DIR" in first and "import lit_clf" not in first  # parameters only
    assert any("from lit_clf import" in "".join(cell["source"]) for cell in code)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_roberta_dir, shared_data) -> Path:
    """fit (with test) then predict a tiny RoBERTa on 8 MASSIVE examples; the run folder holds predictions.jsonl."""
    tmp = tmp_path_factory.mktemp("notebook-run")
    overrides = [*encoder_overrides(tmp, tiny_roberta_dir, shared_data), f"--trainer.logger.init_args.save_dir={tmp}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)  # nothing relative lands in the checkout
        run_cli(["fit", "--config", CONFIG, *overrides])
        (ckpt,) = tmp.rglob("best.ckpt")
        run_dir = ckpt.parents[1]
        predictions = run_dir / "predictions.jsonl"
        run_cli(
            [
                "predict",
                "--config",
                CONFIG,
                *overrides,
                f"--ckpt_path={ckpt}",
                f"--predictions.output_path={predictions}",
            ]
        )
    assert (run_dir / "metrics.csv").is_file() and predictions.is_file()
    return run_dir


def _write_run(folder: Path, model: dict, tasks: list[str], metrics: dict) -> None:
    folder.mkdir(parents=True)
    config = {"model": model, "data": {"init_args": {"tasks": tasks}}, "ckpt_path": None}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with (folder / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", "step", *metrics])
        writer.writeheader()
        writer.writerow({"epoch": 0, "step": 0, **metrics})


@pytest.fixture
def other_runs(tmp_path) -> Path:
    """A dual-model encoder run and zero- and five-shot decoder runs, so that every comparison has bars."""
    encoder = {"class_path": "lit_clf.encoder.EncoderSeqTokenModule", "init_args": {"backbone": "roberta-base"}}
    _write_run(tmp_path / "enc", encoder, ["intent"], {"test/intent_acc": 0.5, "val/intent_acc": 0.5})
    for shots in (0, 5):
        decoder = {
            "class_path": "lit_clf.decoder.DecoderGenerativeModule",
            "init_args": {"backbone": "meta-llama/Meta-Llama-3-8B-Instruct", "shots": shots},
        }
        _write_run(tmp_path / f"dec{shots}", decoder, ["intent"], {"test/intent_acc": 0.6 + shots / 100})
    return tmp_path


def execute(name: str, monkeypatch, **env: str):
    """Run a notebook in a fresh ``python3`` kernel with ``env`` set; an error in any cell fails the test."""
    for module in ("nbclient", "nbformat", "ipykernel", "matplotlib", "pandas"):
        pytest.importorskip(module)
    import nbformat
    from nbclient import NotebookClient

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend returns figures as image/png
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    return outputs


def _texts(outputs) -> str:
    return "\n".join(output.get("text", "") or output.get("data", {}).get("text/plain", "") for output in outputs)


def _images(outputs) -> int:
    return sum("image/png" in output.get("data", {}) for output in outputs)


@pytest.mark.slow  # the decoder-run case below executes the same notebook by default
def test_inspect_predictions_runs(tiny_run, monkeypatch):
    outputs = execute("inspect_predictions.ipynb", monkeypatch, LIT_CLF_RUN_DIR=str(tiny_run))
    text = _texts(outputs)
    assert "8 examples, tasks {'intent': 'sequence', 'slots': 'token'}" in text
    assert "micro avg" in text and "no invalid outputs" in text and "no examples in these prompts" in text
    assert _images(outputs) == 1  # the intent confusion matrix


@pytest.mark.slow
def test_compare_runs_runs(tiny_run, other_runs, monkeypatch):
    outputs = execute("compare_runs.ipynb", monkeypatch, LIT_CLF_RUN_DIRS=f"{tiny_run}:{other_runs}")
    text = _texts(outputs)
    assert "scores are on a subset of 8 test examples" in text
    assert "Llama3-8B-Instruct" in text and "MASSIVE Consolidated Slot Filling" in text
    assert _images(outputs) == 3  # encoder vs decoder, dual vs consolidated, zero- vs five-shot


def test_inspect_predictions_of_a_decoder_run(tmp_path, monkeypatch):
    """Decoder rows: no ``top``, a ``raw`` answer and ``valid`` per task, ``pred`` null when no label was named."""
    rows = [
        {
            "id": "a",
            "text": "wake me up at five",
            "intent": {"gold": "alarm_set", "pred": "alarm_set", "raw": '{"intent": "alarm_set"', "valid": True},
            "slots": {"gold": ["Other"] * 4 + ["time"], "pred": ["Other"] * 4 + ["time"], "raw": "...", "valid": True},
        },
        {
            "id": "b",
            "text": "set an alarm",
            "intent": {"gold": "alarm_set", "pred": None, "raw": "I think it is an alarm", "valid": False},
            "slots": {"gold": ["Other"] * 3, "pred": ["Other"], "raw": "I think it is an alarm", "valid": False},
        },
    ]
    for row in rows:  # five-shot prompts: the examples each one showed
        row["shots"] = [{"id": f"train-{i}", "intent": "alarm_set", "slots": ["Other"]} for i in range(5)]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    outputs = execute("inspect_predictions.ipynb", monkeypatch, LIT_CLF_RUN_DIR=str(tmp_path))
    text = _texts(outputs)
    assert "2 examples" in text and "(no config.yaml)" in text
    assert "I think it is an alarm" in text  # the invalid outputs table
    assert "gold among the shots" in text  # the shot-copying table
    assert _images(outputs) == 1
