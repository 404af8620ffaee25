"""Callbacks shared by both model families."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities import rank_zero_only

from lit_clf.compat import CheckpointHooks
from lit_clf.data.tasks import TaskSpec
from lit_clf.ranks import rank_path


class BestCheckpoint(CheckpointHooks):
    """Keeps the checkpoint with the best validation score, ``checkpoints/best.ckpt`` in the run's folder.

    The score is the first task's main metric unless ``monitor`` names another: ``val/{task}_acc`` for a sequence
    task, ``val/{task}_f1`` for a token task (``val/intent_acc`` for MASSIVE intent + slots, ``val/slots_f1`` for
    slots alone). ``lit-clf`` adds one to every run (options ``--checkpoint.*``), as Lightning adds its default
    checkpoint: none when ``trainer.enable_checkpointing`` is false or ``trainer.callbacks`` lists a checkpoint.
    """

    def __init__(
        self,
        monitor: str | None = None,
        mode: Literal["min", "max"] = "max",
        filename: str | None = "best",
        save_top_k: int = 1,
        last_every_n_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            monitor: Logged metric to rank checkpoints by. Unset: the first task's main validation metric.
            mode: ``max`` keeps the highest score (accuracy, F1); ``min`` the lowest (give it with a loss).
            filename: Checkpoint file name, without ``.ckpt``.
            save_top_k: How many of the best checkpoints to keep (``-1``: all of them).
            last_every_n_steps: With ``save_last``: also refresh ``last.ckpt`` every this many optimizer steps,
                between validations (a multi-day fit killed between two validations resumes from at most this many
                steps back). Unset: at each validation only.
            **kwargs: Any other ``ModelCheckpoint`` option (``save_last``, ``save_weights_only``, ``dirpath``, ...).
        """
        # Lightning refuses top-k > 1 without a monitor at construction; the monitor is known in ``setup``.
        super().__init__(monitor=monitor, mode=mode, filename=filename, save_top_k=min(save_top_k, 1), **kwargs)
        self.save_top_k = save_top_k
        if last_every_n_steps is not None and last_every_n_steps < 1:
            raise ValueError(f"checkpoint.last_every_n_steps must be >= 1, got {last_every_n_steps}")
        self.last_every_n_steps = last_every_n_steps
        self._last_saved_step = -1

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resuming this run (also from a moved or copied project folder: the same ``<run>/version_N/checkpoints``
        tail, its best checkpoint there too), its best and last checkpoints are tracked on in this folder. Another
        run's checkpoint (a fit started from it into a new folder) brings none of that run's bookkeeping:
        ``best.ckpt`` and ``--test_after_fit`` are this run's, never files of the other run's folder."""
        saved = state_dict.get("dirpath")
        if not saved or not self.dirpath or Path(saved).resolve() == Path(self.dirpath).resolve():
            return super().load_state_dict(state_dict)
        best = state_dict.get("best_model_path")
        same_tail = Path(saved).parts[-3:] == Path(self.dirpath).resolve().parts[-3:]
        if not same_tail or (best and not (Path(self.dirpath) / Path(best).name).is_file()):
            return  # another run's (its best checkpoint did not come along): start afresh
        moved = {
            key: str(Path(self.dirpath) / Path(value).name) if isinstance(value, str) and value else value
            for key, value in state_dict.items()
            if key in ("best_model_path", "last_model_path", "kth_best_model_path")
        }
        best_k = {str(Path(self.dirpath) / Path(k).name): v for k, v in (state_dict.get("best_k_models") or {}).items()}
        super().load_state_dict({**state_dict, **moved, "best_k_models": best_k, "dirpath": self.dirpath})

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tasks = getattr(pl_module, "tasks", None)
        if self.monitor is None and tasks:
            self.monitor = main_val_metric(TaskSpec.coerce(tasks[0]))
        if self.monitor is None and self.save_top_k > 1:
            raise ValueError(
                f"checkpoint.save_top_k={self.save_top_k}: give checkpoint.monitor (the model has no tasks)"
            )
        logged = validation_keys(pl_module)
        if self.monitor and logged and not self.monitor.startswith(("train/", "epoch", "step")):
            if self.monitor not in logged:
                raise ValueError(
                    f"checkpoint.monitor: this run never logs {self.monitor!r}; validation logs "
                    f"{', '.join(sorted(logged))}"
                )
        super().setup(trainer, pl_module, stage)

    # Lightning 2.6 refreshes last.ckpt only at steps where it saved a best checkpoint: a run whose score stopped
    # improving would resume from its last improvement. Here last.ckpt follows every save point.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self.saves_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.saves_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        # Where Lightning expects a mid-epoch checkpoint (its step counters assume it). This step's metrics row is
        # logged after the callbacks: MetricsHistory counts it and writes it out at the next batch's start.
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        step, every = trainer.global_step, self.last_every_n_steps
        if every and step and step % every == 0 and step != self._last_saved_step:
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if self.save_last:
            self.save_last_now(trainer)
            self._last_saved_step = trainer.global_step


def validation_keys(pl_module: L.LightningModule) -> set[str]:
    """The metric keys a lit_clf model logs in validation (``val/loss``, ``val/{task}_{metric}``); empty for
    another module."""
    metrics = getattr(pl_module, "metrics", None)
    if metrics is None or "val" not in metrics:
        return set()
    return {"val/loss"} | {f"val/{task}_{name}" for task, group in metrics["val"].items() for name in group}


def main_val_metric(task: TaskSpec) -> str:
    """The validation metric a task is selected by: ``val/{name}_acc`` (sequence) or ``val/{name}_f1`` (token)."""
    return f"val/{task.name}_{'acc' if task.kind == 'sequence' else 'f1'}"  # multi-label: micro F1


class PredictionWriter(BasePredictionWriter):
    """Writes ``lit-clf predict`` results: one JSON line per input example.

    One line per example in the split's order (under several processes, each rank's examples in that order).
    Each line holds ``id``, ``text``, and per task the ``gold`` label(s), the ``pred`` label(s) and, for
    sequence tasks of the encoder, the ``top`` labels with their probabilities. A few-shot decoder's lines also
    hold ``shots``: the examples its prompt showed, each with its ``id`` and its label(s) per task.
    """

    def __init__(self, output_path: str | None = None, overwrite: bool = False) -> None:
        """
        Args:
            output_path: JSONL file to write. Unset: ``predictions.jsonl`` in the run's log directory.
                Under several processes each rank writes ``<name>.rank<N>.jsonl``.
            overwrite: Replace an existing file; otherwise an existing file stops the run before inference.
        """
        super().__init__(write_interval="epoch")
        self.output_path = output_path
        self.overwrite = overwrite

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check the output file before any inference: not there yet (or ``overwrite``), and writable."""
        path = self.resolve_path(trainer)
        if path.is_dir():  # overwrite replaces a file, never a folder
            raise ValueError(f"predictions.output_path: {path} is a folder; give a file path (predictions.jsonl)")
        if path.exists() and not self.overwrite:
            raise ValueError(
                f"predictions.output_path: {path} exists; give another path or --predictions.overwrite true"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            probe = path.with_name(path.name + ".tmp")
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise ValueError(f"predictions.output_path: cannot write {path} ({err.strerror or err})") from None

    def resolve_path(self, trainer: L.Trainer) -> Path:
        path = Path(self.output_path or Path(trainer.log_dir or trainer.default_root_dir) / "predictions.jsonl")
        return rank_path(path, trainer.global_rank, trainer.world_size)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        datamodule = trainer.datamodule
        examples = datamodule.examples(datamodule.predict_split)
        path = self.resolve_path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        rows = sorted((row for batch in predictions for row in batch), key=lambda row: row["index"])
        try:
            with tmp.open("w", encoding="utf-8") as out:
                for row in rows:  # in the split's order, whatever order the length-grouped batches came in
                    example = examples[row["index"]]
                    record = _prediction_record(example, row, pl_module.prompt_shots(example))
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            tmp.replace(path)  # never leave a half-written file under the final name
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        print(f"wrote predictions for {len(rows)} examples to {path}")


def _prediction_record(example, row: dict[str, Any], shots: list) -> dict[str, Any]:
    record: dict[str, Any] = {"id": example.id, "text": example.text}
    for task, predicted in row["tasks"].items():
        record[task] = {"gold": _labels(example, task), **predicted}
    if shots:
        record["shots"] = [{"id": shot.id, **{task: _labels(shot, task) for task in row["tasks"]}} for shot in shots]
    return record


def _labels(example, task: str) -> Any:
    """An example's label(s) for a task, as JSON: a string, a list of word labels, or None."""
    labels = example.labels.get(task)
    return list(labels) if isinstance(labels, tuple) else labels


class ShowTrainingExamples(Callback):
    """Prints the first training examples at the start of ``fit`` exactly as the model reads them: the decoder's
    prompt with the loss span (answer + EOS) between ``[[`` and ``]]``, the encoder's tokens and labels."""

    def __init__(self, num_examples: int = 2) -> None:
        """
        Args:
            num_examples: How many training examples to print (0: none).
        """
        if num_examples < 0:
            raise ValueError(f"show_examples.num_examples: expected 0 or more, got {num_examples}")
        self.num_examples = num_examples

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not self.num_examples or datamodule is None or not hasattr(pl_module, "featurizer"):
            return
        features = datamodule.dataset("train", train=True).features[: self.num_examples]
        for i, feature in enumerate(features):
            print(f"--- training example {i} ---\n{pl_module.featurizer.describe(feature)}", flush=True)
