"""Every private or internal name of Lightning, jsonargparse, W&B and torchmetrics lit_clf uses, behind a named
function or hook class: the one file a library upgrade has to read.

Each has a test in ``tests/test_compat.py`` that fails when the upstream name or signature changes. Outside this
file lit_clf uses public names only. (It sits at the package root, not in ``run/``, because the model, data and
metric code below ``run/`` needs some of it too.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers.csv_logs import CSVLogger, ExperimentWriter
from torchmetrics import Metric

__all__ = [
    "CLIHooks",
    "CheckpointHooks",
    "CSVWriterHooks",
    "MetricSyncHooks",
    "batches_trained_this_epoch",
    "csv_writer",
    "fsdp_wrap_options",
    "jsonargparse_settings",
    "read_distributed_checkpoint",
    "set_csv_writer",
    "wandb_init_options",
]


class CLIHooks(LightningCLI):
    """LightningCLI's private hooks and helpers under public names.

    Subclasses implement :meth:`apply_ckpt_path` (instead of Lightning's own reading of ``--ckpt_path``'s
    hyperparameters) and may wrap :meth:`run_subcommand`."""

    def _parse_ckpt_path(self) -> None:  # LightningCLI.__init__ calls it after parsing
        self.apply_ckpt_path()

    def apply_ckpt_path(self) -> None:
        """What ``--ckpt_path`` does to the parsed config; Lightning's default when not overridden."""
        super()._parse_ckpt_path()

    def _run_subcommand(self, subcommand: str) -> None:
        self.run_subcommand(subcommand)

    def run_subcommand(self, subcommand: str) -> None:
        """Run ``fit``, ``validate``, ``test`` or ``predict`` (with its ``before_*``/``after_*`` hooks)."""
        super()._run_subcommand(subcommand)

    def config_value(self, config: Any, key: str, default: Any = None) -> Any:
        """``config[subcommand][key]`` (or ``config[key]`` without subcommands), as LightningCLI reads it."""
        return self._get(config, key, default=default)

    def callback_keys(self, subcommand: str | None) -> list[str]:
        """The keys of the callbacks added with ``add_lightning_class_args`` (``checkpoint``, ``predictions``...)."""
        return list(self._parser(subcommand).callback_keys)

    def build_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> L.Trainer:
        """The trainer from its config section and the extra callbacks (LightningCLI's own instantiation)."""
        return self._instantiate_trainer(config, callbacks)


class CheckpointHooks(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` helpers under public names."""

    def saves_on_train_epoch_end(self, trainer: L.Trainer) -> bool:
        """Whether this callback saves at the end of training epochs (else after validation)."""
        return self._should_save_on_train_epoch_end(trainer)

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` now, unless the trainer should not save at this point (sanity check, fast dev run)."""
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class CSVWriterHooks(ExperimentWriter):
    """Lightning's CSV experiment writer with its "log folder exists" check under a public name."""

    def _check_log_dir_exists(self) -> None:  # ExperimentWriter.__init__ calls it before writing
        self.on_existing_log_dir()

    def on_existing_log_dir(self) -> None:
        """What to do with a ``metrics.csv`` already in the log folder; Lightning's default: warn, then replace."""
        super()._check_log_dir_exists()


def csv_writer(logger: CSVLogger) -> ExperimentWriter | None:
    """The CSV logger's experiment writer if it has made one yet (None before its first use)."""
    return logger._experiment


def set_csv_writer(logger: CSVLogger, writer: ExperimentWriter) -> None:
    """Make the CSV logger write through ``writer`` (set before its first use)."""
    logger._experiment = writer


def wandb_init_options(logger: Any) -> dict[str, Any]:
    """The ``wandb.init`` options a ``WandbLogger`` was given (``name``, ``project``, ...)."""
    return dict(logger._wandb_init)


class MetricSyncHooks(Metric):
    """torchmetrics' state synchronization across processes under a public name."""

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        self.before_sync()
        super()._sync_dist(*args, **kwargs)

    def before_sync(self) -> None:
        """Called on every process before the metric's states are gathered."""


def batches_trained_this_epoch(trainer: L.Trainer) -> int:
    """Training batches processed in the current epoch (what a mid-epoch resume must skip)."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def fsdp_wrap_options(strategy: Any) -> dict[str, Any]:
    """The keyword arguments Lightning's ``FSDPStrategy`` passes to ``FullyShardedDataParallel`` when it wraps the
    model (mutable: set before the model is wrapped)."""
    return strategy.kwargs


def read_distributed_checkpoint(reader: Any, keys: set[str] | None = None) -> dict[str, Any]:
    """A ``torch.distributed.checkpoint`` folder (``reader``: its storage reader) read whole into one process, as
    nested dicts of plain tensors (only the top-level ``keys`` when given), without a process group: torch's
    internal loader with its empty-state-dict planner, what ``torch.distributed.checkpoint.format_utils`` and
    Lightning's own consolidation use (no public call returns the loaded dict)."""
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    out: dict[str, Any] = {}
    _load_state_dict(out, storage_reader=reader, planner=_EmptyStateDictLoadPlanner(keys=keys), no_dist=True)
    return out


def jsonargparse_settings() -> dict[str, Any]:
    """jsonargparse's parsing settings (set through the public ``set_parsing_settings``; read here only to put its
    import-path policy back as it was, which no public call does)."""
    from jsonargparse import _common

    return _common.parsing_settings


#: The upstream names above, for the tests: (owner, attribute).
PRIVATE_NAMES: tuple[tuple[Callable[[], Any], str], ...] = (
    (lambda: LightningCLI, "_parse_ckpt_path"),
    (lambda: LightningCLI, "_run_subcommand"),
    (lambda: LightningCLI, "_get"),
    (lambda: LightningCLI, "_parser"),
    (lambda: LightningCLI, "_instantiate_trainer"),
    (lambda: ExperimentWriter, "_check_log_dir_exists"),
    (lambda: ModelCheckpoint, "_should_save_on_train_epoch_end"),
    (lambda: ModelCheckpoint, "_should_skip_saving_checkpoint"),
    (lambda: ModelCheckpoint, "_save_last_checkpoint"),
    (lambda: ModelCheckpoint, "_monitor_candidates"),
    (lambda: Metric, "_sync_dist"),
    (
        lambda: __import__("torch.distributed.checkpoint.state_dict_loader").distributed.checkpoint.state_dict_loader,
        "_load_state_dict",
    ),
    (
        lambda: __import__("torch.distributed.checkpoint.default_planner").distributed.checkpoint.default_planner,
        "_EmptyStateDictLoadPlanner",
    ),
)
