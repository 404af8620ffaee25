"""Shared test helpers: small in-memory datasets for model tests (the real readers are tested in tests/data),
the composed configs and tiny-model overrides for runs of the real configs, and running ``lit-clf`` in-process."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import ClassVar

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_clf.data.base import ClassificationDataModule
from lit_clf.data.tasks import OTHER, Example, TaskKind
from lit_clf.run.cli import main

REPO = Path(__file__).resolve().parents[1]

UTTERANCES = [
    ("wake me up at five am this week", "alarm_set", "Other Other Other Other time time date date"),
    ("olly what's the weather in new york", "weather_query", "Other Other Other Other Other place_name place_name"),
    (
        "play the song yesterday by the beatles",
        "play_music",
        "Other Other Other song_name Other artist_name artist_name",
    ),
    ("how much is ten euros in dollars", "qa_currency", "Other Other Other Other currency_name Other currency_name"),
    ("turn the lights off in the kitchen", "iot_hue_lightoff", "Other Other Other Other Other Other house_place"),
    ("remind me to call mom tomorrow", "calendar_set", "Other Other Other Other person date"),
    ("is it going to rain on friday", "weather_query", "Other Other Other Other weather_descriptor Other date"),
    ("set an alarm for seven thirty", "alarm_set", "Other Other Other Other time time"),
]


def toy_examples(prefix: str = "") -> list[Example]:
    """MASSIVE-like examples with an intent and word-level slot labels."""
    examples = []
    for i, (utt, intent, slots) in enumerate(UTTERANCES):
        labels = tuple(slots.split())
        assert len(labels) == len(utt.split())
        examples.append(Example(id=f"{prefix}{i}", text=utt, labels={"intent": intent, "slots": labels}))
    return examples


class ToyDataModule(ClassificationDataModule):
    """The toy utterances as train, val and test: enough to exercise every model code path."""

    available_tasks: ClassVar[dict[str, TaskKind]] = {"intent": "sequence", "slots": "token"}
    dataset_name: ClassVar[str] = "massive"  # MASSIVE-like: the paper's MASSIVE prompts apply

    def load_splits(self) -> dict[str, list[Example]]:
        return {split: toy_examples(f"{split}-") for split in ("train", "val", "test")}


class KillAtStep(Callback):
    """SIGKILLs its own process once training reaches ``step`` optimizer steps: a crash with no cleanup at all."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def data_parallel_trainer(world: int):
    """What a module's global-batch loss reads of its Trainer under ``world`` processes (an initialized process
    group): the world size and a strategy whose ``reduce`` sums over the processes."""
    from types import SimpleNamespace

    import torch.distributed as dist

    def reduce(tensor, reduce_op="sum"):
        dist.all_reduce(tensor)
        return tensor

    return SimpleNamespace(world_size=world, strategy=SimpleNamespace(reduce=reduce))


def toy_specs(names=("intent", "slots")) -> list:
    """Task specs of the toy data for ``names``."""
    return ToyDataModule(tasks=list(names)).task_specs


def make_decoder(model_dir, tasks, **kwargs):
    """A seeded DecoderGenerativeModule with random weights from the tiny model in ``model_dir``, built."""
    from lit_clf.decoder import DecoderGenerativeModule

    torch.manual_seed(0)
    kwargs.setdefault("max_length", 512)
    module = DecoderGenerativeModule(backbone=str(model_dir), tasks=tasks, pretrained=False, **kwargs)
    module.configure_model()
    return module


def quiet_trainer(root: Path, max_steps: int, **options) -> L.Trainer:
    """A CPU Trainer of ``max_steps`` steps, no validation, no logger, bar or model summary, writing under ``root``."""
    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **options,
    )


def run_cli(args: list[str]) -> None:
    """``lit-clf ARGS`` in this process; a non-zero exit fails the test."""
    argv, sys.argv = sys.argv, ["lit-clf"]  # LightningCLI warns when pytest's own argv is there too
    try:
        main(args)
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"lit-clf {' '.join(args)} exited with {exit_.code}"
    finally:
        sys.argv = argv


def compose_encoder(model: str, task: str) -> list[str]:
    """The documented encoder composition (configs/README.md): base, model, the dataset's epochs, task."""
    dataset = task.split("-")[0]
    files = ["encoder/base.yaml", f"encoder/model/{model}.yaml", f"encoder/epochs/{dataset}.yaml", f"task/{task}.yaml"]
    return [arg for name in files for arg in ("--config", str(REPO / "configs" / name))]


def encoder_overrides(tmp_path: Path, backbone: Path, data_dir: Path) -> list[str]:
    """Options that shrink an encoder config to a tiny ``backbone`` folder, 8 examples and one epoch."""
    return [
        f"--model.init_args.backbone={backbone}",
        "--model.init_args.pretrained=false",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.max_examples=8",
        "--data.init_args.max_train_examples=null",
        "--data.init_args.batch_size=4",
        "--data.init_args.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.val_check_interval=1.0",  # once per epoch, whatever the config says
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]


def decoder_overrides(tmp_path: Path, model_dir: Path, data_dir: Path) -> list[str]:
    """Options that shrink a decoder config to a tiny model folder, 6 examples and one step of each stage."""
    return [
        f"--model.init_args.backbone={model_dir}",
        "--model.init_args.pretrained=false",
        "--model.init_args.max_length=2048",
        "--model.init_args.max_new_tokens=4",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.max_examples=6",
        "--data.init_args.max_train_examples=null",
        "--data.init_args.eval_batch_size=3",
        "--data.init_args.num_workers=0",
        "--trainer.max_steps=1",
        "--trainer.val_check_interval=1",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]


def run_cli_error(args: list[str], capsys, monkeypatch) -> str:
    """``lit-clf ARGS`` that must stop with exit code 2 and one ``lit-clf: error:`` line; returns the line."""
    monkeypatch.setattr(sys, "argv", ["lit-clf"])
    monkeypatch.delenv("LIT_CLF_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("lit-clf: error:")]
    return line


def tiny_encoder_args(tmp_path, tiny_roberta_dir, shared_data) -> list[str]:
    """A tiny encoder run on 16 MASSIVE intent examples, without loggers."""
    return [
        f"--config={REPO / 'configs' / 'massive' / 'minilm-intent.yaml'}",
        f"--model.init_args.backbone={tiny_roberta_dir}",
        "--model.init_args.pretrained=false",
        f"--data.init_args.data_dir={shared_data}",
        "--data.init_args.max_examples=16",
        "--data.init_args.max_train_examples=null",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
    ]


__all__ = [
    "OTHER",
    "REPO",
    "KillAtStep",
    "ToyDataModule",
    "compose_encoder",
    "data_parallel_trainer",
    "decoder_overrides",
    "encoder_overrides",
    "make_decoder",
    "quiet_trainer",
    "run_cli",
    "run_cli_error",
    "tiny_encoder_args",
    "toy_examples",
    "toy_specs",
]
