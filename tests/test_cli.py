"""The lit-clf command: help, every config in configs/, and a fit smoke run."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import yaml

from lit_clf.run.cli import main
from tests.helpers import REPO, compose_encoder, encoder_overrides, run_cli, run_cli_error, tiny_encoder_args

CONFIG_DIR = REPO / "configs"
# Composed with -c a.yaml -c b.yaml ...: encoder rows tested here, decoder rows in tests/decoder/test_module.py.
FRAGMENTS = ("api", "decoder", "encoder", "experiments", "prompts", "task", "trainer")
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.relative_to(CONFIG_DIR).parts[0] not in FRAGMENTS)
ENCODER_CONFIGS = [c for c in CONFIGS if "EncoderSeqTokenModule" in c.read_text()]


# The paper's encoder rows x Table 3 columns, with the values of the whole files they were until composition
# (configs/{massive,newsgroups}/roberta-{base,large}-<task>.yaml): (model, task file) -> data class, tasks,
# max_epochs, checkpoint monitor.
MASSIVE, NEWSGROUPS = "lit_clf.data.MassiveDataModule", "lit_clf.data.NewsgroupsDataModule"
ENCODER_TASKS = {
    "massive-intent": (MASSIVE, ["intent"], 20, "val/intent_acc"),
    "massive-slots": (MASSIVE, ["slots"], 20, "val/slots_f1"),
    "massive-joint": (MASSIVE, ["intent", "slots"], 20, "val/intent_acc"),
    "newsgroups-topic20": (NEWSGROUPS, ["topic20"], 10, "val/topic20_acc"),
    "newsgroups-topic7": (NEWSGROUPS, ["topic7"], 10, "val/topic7_acc"),
    "newsgroups-joint": (NEWSGROUPS, ["topic20", "topic7"], 10, "val/topic20_acc"),
}
ENCODER_ROWS = [(model, task) for model in ("roberta-base", "roberta-large") for task in ENCODER_TASKS]
# A tiny backbone replaces the model in training: two rows train every base, model and epochs file in the default
# suite (each task file also trains in the decoder rows); the other ten run with -m slow. All twelve resolve above.
DEFAULT_TRAINED = {("roberta-base", "massive-joint"), ("roberta-large", "newsgroups-joint")}
TRAINED_ROWS = [
    pytest.param(model, task, marks=() if (model, task) in DEFAULT_TRAINED else pytest.mark.slow)
    for model, task in ENCODER_ROWS
]


def test_help_documents_options_from_docstrings(capsys):
    run_cli(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--test_after_fit" in out and "--predictions.output_path" in out
    words = " ".join(out.split())  # the help wraps to the terminal's width
    assert "--checkpoint.monitor" in out and "Unset: the first task's main validation metric" in words


def test_model_and_data_help_show_docstrings(capsys):
    run_cli(["fit", "--model.help", "lit_clf.encoder.EncoderSeqTokenModule"])
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
    assert printed["model"]["class_path"].startswith(("lit_clf.encoder.", "lit_clf.decoder."))
    assert "tasks" not in printed["model"]["init_args"]  # linked from the data, never in YAML


@pytest.mark.parametrize(("model", "task"), ENCODER_ROWS, ids="/".join)
def test_composed_encoder_rows_resolve_to_the_paper_hyperparameters(model, task, capsys):
    run_cli(["fit", *compose_encoder(model, task), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    data_class, tasks, epochs, _ = ENCODER_TASKS[task]
    init = printed["model"]["init_args"]
    assert printed["seed_everything"] == 42 and printed["test_after_fit"] is True
    assert printed["model"]["class_path"] == "lit_clf.encoder.EncoderSeqTokenModule"
    assert init["backbone"] == model and init["max_length"] == 512
    assert init["optimizer"]["class_path"] == "torch.optim.Adam" and init["optimizer"]["init_args"]["lr"] == 1e-5
    assert init["lr_scheduler"] is None and "tasks" not in init  # tasks: linked from the data, never in YAML
    data = printed["data"]
    assert data["class_path"] == data_class and data["init_args"]["tasks"] == tasks
    assert (data["init_args"]["batch_size"], data["init_args"]["eval_batch_size"]) == (32, 64)
    assert data["init_args"]["num_workers"] == 4
    trainer = printed["trainer"]
    assert trainer["max_epochs"] == epochs and trainer["precision"] == "bf16-mixed"
    assert [(lg["class_path"].rsplit(".", 1)[1], lg["init_args"]["save_dir"]) for lg in trainer["logger"]] == [
        ("CSVLogger", "runs"),
        ("WandbLogger", "runs"),
    ]
    assert trainer["logger"][1]["init_args"]["project"] == "lit_clf"
    assert trainer["callbacks"] is None  # the checkpoint is lit-clf's own: best on the first task's metric
    checkpoint = printed["checkpoint"]
    assert checkpoint["monitor"] is None and checkpoint["mode"] == "max" and checkpoint["filename"] == "best"
    assert checkpoint["save_last"] is True and checkpoint["save_top_k"] == 1


def test_config_paths_named_in_docs_and_comments_exist():
    """Moved or renamed configs leave no stale command behind (placeholders such as ``<TASK>`` are skipped)."""
    texts = [REPO / "README.md", REPO / "Makefile", *(REPO / "docs").glob("*.md"), *(REPO / "sweeps").iterdir()]
    texts += [*CONFIG_DIR.rglob("*.md"), *CONFIG_DIR.rglob("*.yaml"), *(REPO / "notebooks").glob("*.ipynb")]
    named = {(text.name, path) for text in texts for path in re.findall(r"configs/[\w./+-]*?\.yaml", text.read_text())}
    assert len(named) > 20
    assert [(name, path) for name, path in sorted(named) if not (REPO / path).is_file()] == []


@pytest.mark.parametrize("config", ENCODER_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_encoder_config_trains_with_a_tiny_backbone(config, tmp_path, request, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs log to ./runs
    causal = "SmolLM2" in config.read_text()  # a decoder backbone with heads: a tiny Llama with the SmolLM2 tokenizer
    tiny = request.getfixturevalue("tiny_smollm_dir" if causal else "tiny_roberta_dir")
    run_cli(["fit", "--config", str(config), *encoder_overrides(tmp_path, tiny, shared_data)])
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert metrics, "the CSV logger wrote no metrics"
    header = metrics[0].read_text().splitlines()[0]
    first_task = (yaml.safe_load(config.read_text())["data"]["init_args"].get("tasks") or ["ner"])[0]  # WNUT: ner
    assert f"test/{first_task}_" in header  # test_after_fit ran on the best checkpoint
    assert list(tmp_path.rglob("best.ckpt"))


@pytest.mark.parametrize(("model", "task"), TRAINED_ROWS, ids="/".join)
def test_composed_encoder_rows_train_with_a_tiny_backbone(
    model, task, tmp_path, tiny_roberta_dir, shared_data, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the configs log to ./runs
    run_cli(["fit", *compose_encoder(model, task), *encoder_overrides(tmp_path, tiny_roberta_dir, shared_data)])
    _, tasks, _, monitor = ENCODER_TASKS[task]
    (metrics,) = tmp_path.rglob("metrics.csv")
    assert f"test/{tasks[0]}_" in metrics.read_text().splitlines()[0]  # test_after_fit ran on the best checkpoint
    # the CSV log is named after the run, as W&B names it: runs/<dataset>-<model>-<tasks>-ft/version_0
    assert metrics.parents[1].name == f"{task.split('-')[0]}-{tiny_roberta_dir.name}-{'+'.join(tasks)}-ft"
    (best,) = tmp_path.rglob("best.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=False)["callbacks"]
    (key,) = [key for key in state if key.startswith("BestCheckpoint")]
    assert state[key]["monitor"] == monitor  # derived from the first task, as the whole files stated it
    assert (best.parent / "last.ckpt").is_file()


def test_test_and_predict_from_checkpoint(tmp_path, tiny_roberta_dir, shared_data, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/massive/minilm-intent.yaml")
    overrides = encoder_overrides(tmp_path, tiny_roberta_dir, shared_data)
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


def test_missing_data_is_one_line_error(tmp_path, capsys, monkeypatch):
    args = [
        "fit",
        f"--config={CONFIG_DIR / 'massive' / 'minilm-intent.yaml'}",
        f"--data.init_args.data_dir={tmp_path}",
        "--data.init_args.download=false",
    ]
    line = run_cli_error(args, capsys, monkeypatch)
    assert "MASSIVE en-US not found" in line and str(tmp_path) in line and "LIT_CLF_DATA" in line


def test_a_readers_own_message_is_the_one_printed(tmp_path, minilm_dir, shared_data, capsys, monkeypatch):
    """The reader's ``file:line: what`` reaches the user, not the innermost exception it was raised over."""
    folder = tmp_path / "massive"
    folder.mkdir()
    lines = (shared_data / "massive" / "en-US.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[10] = '{"id": broken\n'
    (folder / "en-US.jsonl").write_text("".join(lines[:50]), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["lit-clf"])
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "fit",
                f"--config={CONFIG_DIR / 'massive' / 'minilm-intent.yaml'}",
                f"--model.init_args.backbone={minilm_dir}",
                f"--data.init_args.data_dir={tmp_path}",
            ]
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    where = folder / "en-US.jsonl"
    assert err == f"lit-clf: error: {where}:11: malformed JSON (Expecting value: line 1 column 8 (char 7))"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--data.init_args.eval_batch_size=-1", "lit-clf: error: eval_batch_size must be >= 1 or unset, got -1"),
        (
            "--model.init_args.max_length=2",
            "lit-clf: error: max_length=2 leaves no room for text: the tokenizer adds 2 special tokens; "
            "give at least 3",
        ),
    ],
)
def test_values_the_model_cannot_use_are_refused(
    option, message, tmp_path, tiny_roberta_dir, shared_data, capsys, monkeypatch
):
    args = ["fit", *tiny_encoder_args(tmp_path, tiny_roberta_dir, shared_data), option]
    assert run_cli_error(args, capsys, monkeypatch) == message


def test_predict_refuses_to_overwrite_and_checks_the_path_first(
    tmp_path, tiny_roberta_dir, shared_data, capsys, monkeypatch
):
    out = tmp_path / "predictions.jsonl"
    out.write_text("earlier results\n")
    args = ["predict", *tiny_encoder_args(tmp_path, tiny_roberta_dir, shared_data), f"--predictions.output_path={out}"]
    line = run_cli_error(args, capsys, monkeypatch)
    assert line == (
        f"lit-clf: error: predictions.output_path: {out} exists; give another path or --predictions.overwrite true"
        " (LIT_CLF_TRACEBACK=1 shows where)"
    )
    assert out.read_text() == "earlier results\n"  # nothing lost
    blocked = tmp_path / "file"
    blocked.write_text("")
    args += ["--overwrite_run=true"]  # the refused attempt left its config.yaml in the same folder (no logger)
    args[-2] = f"--predictions.output_path={blocked / 'predictions.jsonl'}"
    assert "predictions.output_path: cannot write" in run_cli_error(args, capsys, monkeypatch)
    run_cli([*args[:-2], f"--predictions.output_path={out}", "--predictions.overwrite=true", "--overwrite_run=true"])
    assert len(out.read_text().splitlines()) == 16


def test_every_adam_in_the_configs_and_the_default_is_fused():
    """The fused kernel is the fast path on CPU and GPU (the per-tensor loop allocates temporaries every step)."""
    from lit_clf.module import default_optimizer

    found = []
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        optimizer = ((yaml.safe_load(path.read_text()) or {}).get("model") or {}).get("init_args", {}).get("optimizer")
        if optimizer and optimizer["class_path"] in ("torch.optim.Adam", "torch.optim.AdamW"):
            found.append(path.name)
            assert optimizer["init_args"].get("fused") is True, path
    assert len(found) >= 10
    assert default_optimizer(torch.nn.Linear(2, 2).parameters()).defaults["fused"] is True


@pytest.mark.parametrize(
    ("cuda", "option", "expected"), [(True, [], "high"), (True, ["medium"], "medium"), (False, [], None)]
)
def test_float32_matmul_precision_is_set_on_cuda_only(cuda, option, expected, monkeypatch):
    """The TF32 setting Lightning advises on tensor-core GPUs; a CPU run keeps torch's full float32."""
    import lit_clf.run.cli as cli

    class Reached(Exception):
        pass

    def stop(*args):
        raise Reached(args[0] if isinstance(args[0], str) else None)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch, "set_float32_matmul_precision", stop)
    monkeypatch.setattr(cli, "name_loggers", stop)  # the next step of the same hook: nothing gets built
    args = ["fit", f"--config={CONFIG_DIR / 'massive' / 'minilm-intent.yaml'}"]
    args += [f"--float32_matmul_precision={value}" for value in option]
    with pytest.raises(Reached) as reached:
        cli.main(args)
    assert reached.value.args[0] == expected


def test_predict_to_a_folder_is_refused_before_inference(tmp_path, tiny_roberta_dir, shared_data, capsys, monkeypatch):
    out = tmp_path / "adir"
    out.mkdir()
    args = [
        "predict",
        *tiny_encoder_args(tmp_path, tiny_roberta_dir, shared_data),
        f"--predictions.output_path={out}",
        "--predictions.overwrite=true",
    ]
    line = run_cli_error(args, capsys, monkeypatch)
    assert line.startswith(f"lit-clf: error: predictions.output_path: {out} is a folder; give a file path")
    assert out.is_dir() and not list(tmp_path.glob("adir.tmp"))
