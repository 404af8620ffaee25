"""Experiment tracking callbacks: W&B run metadata, throughput, prediction tables.

Everything here also works without W&B: the callbacks do nothing for loggers other than ``WandbLogger``
(except ``ThroughputLogger``, which logs to every logger). Reading W&B runs back is the report's
(:mod:`lit_clf.report.wandb_files`).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import yaml
from jsonargparse import Namespace
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from lit_clf.compat import wandb_init_options
from lit_clf.report.identity import dataset_name, run_facts

#: The ``name`` Lightning gives a ``CSVLogger`` or ``TensorBoardLogger`` when none is set.
_DEFAULT_NAME = "lightning_logs"


def name_loggers(config: Namespace, stage: str) -> None:
    """Name the loggers of a parsed CLI config (one subcommand's) whose ``name`` is left at Lightning's default
    ``lightning_logs`` (``CSVLogger``, ``TensorBoardLogger``) after the run, as W&B runs are named
    (:attr:`RunFacts.name`): a CSV log goes to ``<save_dir>/massive-roberta-base-intent-ft/version_<n>/``.
    A name given in the config wins. The config is changed in place, so the saved ``config.yaml`` shows it."""
    logger = config.get("trainer.logger")
    loggers = logger if isinstance(logger, list) else [logger]
    unnamed = [lg for lg in loggers if isinstance(lg, Namespace) and lg.get("init_args.name") == _DEFAULT_NAME]
    if not unnamed:
        return
    dataset = dataset_name(config.get("data.class_path"), config.get("data.init_args.name"))
    facts = run_facts(config.as_dict(), dataset, stage)
    for lg in unnamed:
        lg.init_args.name = facts.name


class LitClfSaveConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` beside the run (as LightningCLI does) and, with a ``WandbLogger``, puts the
    whole resolved config in ``wandb.config`` and names and tags the run from it (rank zero only)."""

    _resolved: dict[str, Any] | None = None

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        loggers = _wandb_loggers(trainer)
        if not loggers:
            return
        self._resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        dataset = getattr(trainer.datamodule, "dataset_name", "") or "data"
        facts = run_facts(self._resolved, dataset, stage)
        for logger in loggers:
            run = logger.experiment
            if not wandb_init_options(logger).get("name"):  # a name given in the config wins
                run.name = facts.name
            run.tags = tuple(dict.fromkeys([*(run.tags or ()), *facts.tags]))
        self._log_resolved(trainer)

    def _log_resolved(self, trainer: L.Trainer) -> None:
        for logger in _wandb_loggers(trainer) if self._resolved is not None else ():
            logger.experiment.config.update(self._resolved, allow_val_change=True)

    # Lightning logs the module's hyperparameters into the same wandb.config after ``setup``; a name they share
    # with a top-level CLI key (``optimizer``, ``lr_scheduler``) would replace that section: put the CLI config back.
    def on_fit_start(self, trainer, pl_module) -> None:
        self._log_resolved(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        self._log_resolved(trainer)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._log_resolved(trainer)


def _wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)] if trainer.is_global_zero else []


# ------------------------------------------------------------------------------------------ throughput
class ThroughputLogger(Callback):
    """Logs training throughput (``train/samples_per_s``, ``train/tokens_per_s``: tokens computed, without padding
    and counting a shared prompt prefix once; summed over devices)
    and, on CUDA, peak memory (``train/peak_gpu_mem_gib``, the largest over devices)."""

    def __init__(self, log_every_n_steps: int = 50) -> None:
        """
        Args:
            log_every_n_steps: Optimizer steps per throughput measurement window; 0 switches it off.
        """
        self.log_every_n_steps = log_every_n_steps
        self._start: float | None = None
        self._validation_start: float | None = None
        self._samples = 0
        self._tokens = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.log_every_n_steps:
            return
        ids = batch["input_ids"]
        if "segments" in batch:  # one packed sequence (shared prompt prefix): every token is computed
            self._samples += batch["rows"]
            self._tokens += ids.numel()
        else:
            self._samples += ids.shape[0]
            self._tokens += int(batch["attention_mask"].sum())
        if (batch_idx + 1) % self.log_every_n_steps:
            return
        seconds = time.perf_counter() - self._start
        world = trainer.world_size
        metrics = {
            "train/samples_per_s": world * self._samples / seconds,
            "train/tokens_per_s": world * self._tokens / seconds,
        }
        if torch.cuda.is_available() and ids.is_cuda:
            metrics["train/peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(ids.device) / 2**30
        pl_module.log_dict(metrics, rank_zero_only=True)
        self._start, self._samples, self._tokens = time.perf_counter(), 0, 0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        # A validation inside an epoch (val_check_interval) is not training time: the window skips it.
        if self._start is not None and self._validation_start is not None:
            self._start += time.perf_counter() - self._validation_start
        self._validation_start = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._start, self._samples, self._tokens = None, 0, 0  # validation time is not training time


# ------------------------------------------------------------------------------------ prediction table
class WandbPredictionTable(Callback):
    """At the end of ``test``, logs a W&B Table of predictions (``test/predictions``: id, text, and per
    task gold, prediction and whether the output was valid) and a confusion matrix per sequence task
    (``test/{task}_confusion``). Needs a ``WandbLogger`` and a model whose ``test_step`` returns its
    prediction rows, as both lit_clf model families do; otherwise it does nothing."""

    def __init__(self, enabled: bool = True, max_text_chars: int = 2000) -> None:
        """
        Args:
            enabled: Log the table and confusion matrices.
            max_text_chars: Texts longer than this are cut in the table (20NG posts can be long).
        """
        self.enabled = enabled
        self.max_text_chars = max_text_chars
        self._rows: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.enabled and isinstance(outputs, list):
            self._rows.extend(outputs)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if not (self.enabled and any(isinstance(lg, WandbLogger) for lg in trainer.loggers)):
            return
        rows = _gather_rows(self._rows)  # a collective: every rank takes part
        loggers = _wandb_loggers(trainer)
        if not (loggers and rows):
            return
        import wandb

        examples = trainer.datamodule.examples("test")
        rows = list({row["index"]: row for row in rows}.values())  # drop the DistributedSampler's repeats
        tasks = list(rows[0]["tasks"])
        columns = ["id", "text"] + [f"{task}_{part}" for task in tasks for part in ("gold", "pred", "valid")]
        table = wandb.Table(columns=columns)
        for row in rows:
            example = examples[row["index"]]
            cells = [example.id, example.text[: self.max_text_chars]]
            for task in tasks:
                predicted = row["tasks"][task]
                cells += [_cell(example.labels[task]), _cell(predicted["pred"]), bool(predicted.get("valid", True))]
            table.add_data(*cells)
        payload = {"test/predictions": table, **self._confusion(pl_module, rows, examples)}
        for logger in loggers:
            logger.experiment.log(payload)

    def _confusion(self, pl_module, rows, examples) -> dict[str, Any]:
        import wandb

        plots = {}
        for task in getattr(pl_module, "tasks", []):
            if task.kind != "sequence":
                continue
            ids = task.label2id
            gold = [ids[examples[row["index"]].labels[task.name]] for row in rows]
            # An invalid or unknown prediction has no class: W&B's matrix needs one, so it is left out.
            pairs = [(g, ids.get(row["tasks"][task.name]["pred"])) for g, row in zip(gold, rows)]
            pairs = [(g, p) for g, p in pairs if p is not None]
            if pairs:
                y_true, preds = zip(*pairs)
                plots[f"test/{task.name}_confusion"] = wandb.plot.confusion_matrix(
                    y_true=list(y_true), preds=list(preds), class_names=list(task.labels)
                )
        return plots


def _cell(value: Any) -> Any:
    return " ".join(value) if isinstance(value, (list, tuple)) else value


def _gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    gathered: list[list[dict[str, Any]]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in part]
