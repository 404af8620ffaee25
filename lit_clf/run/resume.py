"""Resuming a run where it stopped: ``--ckpt_path last`` finds the run's newest checkpoint, and its CSV metrics
history is kept (Lightning's CSV logger would start ``metrics.csv`` afresh in the same folder).

The training order and random streams are the other half of an exact resume: the DataModule's ``state_dict``
(epoch and batches trained) and :func:`lit_clf.module.rng_states` travel in the checkpoint.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lit_clf.compat import CSVWriterHooks, csv_writer, set_csv_writer

__all__ = ["MetricsHistory", "find_last_checkpoint", "keep_metrics_history"]

_VERSION = re.compile(r"version_(\d+)$")


def find_last_checkpoint(config: Namespace) -> tuple[Path, int | None]:
    """The newest ``last.ckpt`` of the run a parsed ``fit`` config names, and the logger version it belongs to.

    Looked for in ``checkpoint.dirpath`` when set, else in ``<save_dir>/<name>/version_<n>/checkpoints/`` of the
    first CSV or TensorBoard logger (the highest version holding one), else in ``<default_root_dir>/checkpoints/``
    (no logger). A ``ValueError`` naming where it looked if there is none."""
    dirpath = config.get("checkpoint.dirpath")
    if dirpath:
        candidates = [(Path(dirpath) / "last.ckpt", None)]
    else:
        logger = config.get("trainer.logger")
        loggers = logger if isinstance(logger, list) else [logger]
        folder = next(
            (
                Path(lg.init_args.save_dir) / str(lg.init_args.name)
                for lg in loggers
                if isinstance(lg, Namespace) and lg.get("init_args.save_dir") and lg.get("init_args.name") is not None
            ),
            None,
        )
        if folder is not None:
            found = [(int(m.group(1)), p) for p in folder.glob("version_*") if (m := _VERSION.match(p.name))]
            named = _named_version(loggers)
            if named is not None:  # --trainer.logger.init_args.version N: that run, not the newest
                found = [(v, p) for v, p in found if v == named] or [(named, folder / f"version_{named}")]
            candidates = [(p / "checkpoints" / "last.ckpt", v) for v, p in sorted(found, reverse=True)]
        else:
            root = Path(config.get("trainer.default_root_dir") or ".")
            candidates = [(root / "checkpoints" / "last.ckpt", None)]
    for path, version in candidates:
        if path.exists():  # a file, or a sharded checkpoint's folder
            return path, version
    where = candidates[0][0] if len(candidates) == 1 else (folder / "version_*" / "checkpoints" / "last.ckpt")
    raise ValueError(
        f"ckpt_path last: no checkpoint of this run at {where} (checkpoint.save_last writes one); give the "
        "checkpoint file, or start without --ckpt_path"
    )


def _named_version(loggers: list) -> int | None:
    """The logger version a config names (``version: 3`` or ``version: version_3``), or None."""
    for lg in loggers:
        version = lg.get("init_args.version") if isinstance(lg, Namespace) else None
        if version is None:
            continue
        match = _VERSION.match(str(version)) or re.fullmatch(r"(\d+)", str(version))
        if match:
            return int(match.group(1))
    return None


class MetricsHistory(Callback):
    """Records in each checkpoint how many rows every CSV log held when it was saved, so that a run resumed from it
    into the same log folder keeps exactly those rows (:func:`keep_metrics_history`): the rows logged after the
    checkpoint are logged again as training replays them."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self._pending = 0  # a checkpoint saved at a training batch's end: that step's row, logged after it
        self._flush = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # Runs before the checkpoint callbacks' (Lightning runs those last); Lightning then logs this step's
        # metrics when the step is a multiple of log_every_n_steps (or the fit stops).
        every = trainer.log_every_n_steps
        self._pending = int(bool(every) and trainer.global_step % every == 0 or trainer.should_stop)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._flush:  # the row a checkpoint counted at the last batch's end: on disk before anything else
            for logger in trainer.loggers:
                if isinstance(logger, CSVLogger):
                    logger.save()
        self._pending, self._flush = 0, False

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = 0  # the batch's row is logged by now

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "_trainer", None)
        rows = {}
        for logger in trainer.loggers if trainer is not None and trainer.is_global_zero else []:
            if isinstance(logger, CSVLogger):
                logger.save()  # flush what was logged before this checkpoint
                path = Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE
                rows[str(Path(logger.log_dir).resolve())] = _count_rows(path) + self._pending
        self._flush = self._flush or bool(self._pending)
        return {"rows": rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = dict(state_dict.get("rows", {}))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer


def _count_rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open(newline="", encoding="utf-8") as file:
        return sum(1 for _ in csv.DictReader(file))


class _KeepingWriter(CSVWriterHooks):
    """Lightning's CSV experiment writer, keeping the first ``rows`` rows of an existing ``metrics.csv`` (and its
    columns) instead of deleting the file."""

    def __init__(self, log_dir: str, rows: int) -> None:
        self._keep = rows
        super().__init__(log_dir)

    def on_existing_log_dir(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            fieldnames = list(reader.fieldnames or [])
            kept = [row for _, row in zip(range(self._keep), reader)]
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = fieldnames


def _recorded_rows(recorded: dict[str, int], log_dir: Path) -> int | None:
    """The rows recorded for ``log_dir``: by its absolute path, else (the project folder moved or copied since the
    checkpoint) by its last two parts, ``<run name>/version_N``, when exactly one recorded folder ends so."""
    exact = recorded.get(str(log_dir.resolve()))
    if exact is not None:
        return exact
    tail = log_dir.resolve().parts[-2:]
    matches = [rows for path, rows in recorded.items() if Path(path).parts[-2:] == tail]
    return matches[0] if len(matches) == 1 else None


def keep_metrics_history(trainer: L.Trainer, states: dict[str, Any]) -> None:
    """Before ``fit`` resumes from a checkpoint whose callback states are ``states`` (its ``callbacks`` entry):
    every CSV logger writing into a folder the checkpoint recorded keeps that folder's rows from before the
    checkpoint. Call it before the trainer starts (its setup opens the loggers)."""
    recorded = next((state["rows"] for key, state in states.items() if key.startswith("MetricsHistory")), {})
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger) and csv_writer(logger) is None:
            rows = _recorded_rows(recorded, Path(logger.log_dir))
            if rows is not None:
                set_csv_writer(logger, _KeepingWriter(logger.log_dir, rows))
