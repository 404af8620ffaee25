"""BestCheckpoint: the monitored metric follows the tasks; lit-clf adds one checkpoint to every run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from lit_clf.data.tasks import TaskSpec
from lit_clf.run.callbacks import BestCheckpoint
from tests.helpers import run_cli

INTENT = TaskSpec("intent", "sequence", ("alarm_set", "weather_query"))
SLOTS = TaskSpec("slots", "token", ("Other", "time"))
TOPIC7 = TaskSpec("topic7", "sequence", ("comp", "rec"))


def set_up(callback: BestCheckpoint, tasks, tmp_path) -> BestCheckpoint:
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, callbacks=[callback], enable_progress_bar=False)
    callback.setup(trainer, SimpleNamespace(tasks=tasks), "fit")
    return callback


@pytest.mark.parametrize(
    ("tasks", "monitor"),
    [
        ([INTENT], "val/intent_acc"),
        ([SLOTS], "val/slots_f1"),
        ([INTENT, SLOTS], "val/intent_acc"),
        ([TOPIC7], "val/topic7_acc"),
    ],
    ids=["intent", "slots", "intent+slots", "topic7"],
)
def test_monitor_is_the_first_tasks_main_metric(tasks, monitor, tmp_path):
    callback = set_up(BestCheckpoint(), tasks, tmp_path)
    assert (callback.monitor, callback.mode, callback.filename) == (monitor, "max", "best")
    assert callback.state_key.startswith(f"BestCheckpoint{{'monitor': '{monitor}'")  # state saved under the metric


def test_task_dicts_from_a_checkpoint_work_too(tmp_path):
    assert set_up(BestCheckpoint(), [SLOTS.to_dict()], tmp_path).monitor == "val/slots_f1"


def test_a_given_monitor_wins(tmp_path):
    callback = set_up(BestCheckpoint(monitor="val/loss", mode="min"), [INTENT], tmp_path)
    assert (callback.monitor, callback.mode) == ("val/loss", "min")


def test_top_k_above_one_is_kept_until_the_monitor_is_known(tmp_path):
    callback = set_up(BestCheckpoint(save_top_k=3), [SLOTS], tmp_path)
    assert (callback.monitor, callback.save_top_k) == ("val/slots_f1", 3)
    with pytest.raises(ValueError, match="checkpoint.save_top_k=3: give checkpoint.monitor"):
        set_up(BestCheckpoint(save_top_k=3), [], tmp_path)


def fit_toy(tmp_path, backbone, *extra: str) -> None:
    """One epoch of a tiny encoder on the in-memory toy utterances, slot filling only, through ``lit-clf fit``."""
    run_cli(
        [
            "fit",
            "--model=lit_clf.encoder.EncoderSeqTokenModule",
            f"--model.init_args.backbone={backbone}",
            "--model.init_args.pretrained=false",
            "--data=tests.helpers.ToyDataModule",
            "--allow_class_path=tests.helpers",
            "--data.init_args.tasks=[slots]",
            "--trainer.max_epochs=1",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={tmp_path}",
            *extra,
        ]
    )


def test_cli_keeps_the_best_checkpoint_by_the_tasks_metric(tmp_path, tiny_roberta_dir):
    fit_toy(tmp_path, tiny_roberta_dir, "--checkpoint.save_last=true")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["callbacks"]
    (key,) = [key for key in state if key.startswith("BestCheckpoint")]
    assert state[key]["monitor"] == "val/slots_f1"


def test_cli_adds_no_checkpoint_when_switched_off(tmp_path, tiny_roberta_dir):
    fit_toy(tmp_path, tiny_roberta_dir, "--trainer.enable_checkpointing=false")  # Lightning refuses a checkpoint then
    assert not list(tmp_path.rglob("*.ckpt"))


def test_cli_adds_no_checkpoint_beside_one_the_config_lists(tmp_path, tiny_roberta_dir):
    own = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"filename": "mine"}}
    fit_toy(tmp_path, tiny_roberta_dir, f"--trainer.callbacks=[{json.dumps(own)}]")
    assert [p.name for p in tmp_path.rglob("*.ckpt")] == ["mine.ckpt"]


def test_last_checkpoint_every_n_steps_between_validations(tmp_path, tiny_llama2_dir):
    """A decoder fit with no validation yet still leaves a resumable last.ckpt every N steps (optimizer state in)."""
    import torch

    from lit_clf.run.callbacks import BestCheckpoint
    from tests.helpers import ToyDataModule, make_decoder, quiet_trainer, toy_specs

    module = make_decoder(tiny_llama2_dir, toy_specs(("intent",)), prompt_format="llama2")
    checkpoint = BestCheckpoint(save_last=True, last_every_n_steps=2, dirpath=tmp_path / "checkpoints")
    seen = {}

    class Probe(L.Callback):  # what a kill during step 3 would leave
        def on_train_batch_start(self, trainer, *args) -> None:
            if trainer.global_step == 2:
                seen.update(torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True))

    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[checkpoint, Probe()])
    trainer.fit(module, datamodule=ToyDataModule(tasks=["intent"], batch_size=2))
    assert seen["global_step"] == 2  # written after step 2, before any validation
    assert seen["optimizer_states"] and seen["optimizer_states"][0]["state"]  # resumable: AdamW moments kept
    with pytest.raises(ValueError, match="last_every_n_steps must be >= 1"):
        BestCheckpoint(last_every_n_steps=0)


def test_test_after_fit_runs_without_the_fits_optimizer_states(tmp_path, tiny_roberta_dir, shared_data):
    """The optimizer (AdamW: twice the weights in fp32) is released before the test after a fit starts."""
    from tests.helpers import tiny_encoder_args

    out = tmp_path / "optimizers.json"
    args = tiny_encoder_args(tmp_path, tiny_roberta_dir, shared_data)
    probe = json.dumps({"class_path": "tests.test_callbacks.OptimizerProbe", "init_args": {"path": str(out)}})
    run_cli(
        [
            "fit",
            *args,
            "--test_after_fit=true",
            "--allow_class_path=tests.test_callbacks",
            f"--trainer.callbacks+={probe}",
        ]
    )
    assert json.loads(out.read_text()) == {"fit": 1, "test": 0}


class OptimizerProbe(L.Callback):
    """Writes the number of the trainer's optimizers when fit and test start to ``path``."""

    def __init__(self, path: str) -> None:
        self.path, self.seen = path, {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.seen["fit"] = len(trainer.strategy.optimizers)

    def on_test_start(self, trainer, pl_module) -> None:
        self.seen["test"] = len(trainer.strategy.optimizers)
        with open(self.path, "w") as file:
            json.dump(self.seen, file)
