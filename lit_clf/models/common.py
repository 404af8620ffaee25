"""Pieces both model families share: optimizer defaults, checkpoint hygiene, task metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch

from lit_clf.data.tasks import TaskSpec

_PLAIN = (str, int, float, bool, type(None))


def default_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with the paper's encoder learning rate (1e-5); configs normally set their own optimizer."""
    return torch.optim.Adam(params, lr=1e-5)


def is_plain(value: Any) -> bool:
    """True for values made only of str/int/float/bool/None, lists and string-keyed dicts."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def sanitize_checkpoint(checkpoint: dict[str, Any], tasks: Sequence[TaskSpec]) -> None:
    """Keep checkpoints loadable with ``torch.load(weights_only=True)`` and self-describing.

    Hyperparameters that are Python objects (an optimizer callable given in code rather than in a
    config) are dropped, and the task specs and ``id2label`` maps are stored beside the weights.
    """
    hparams = checkpoint.get("hyper_parameters")
    if hparams is not None:
        checkpoint["hyper_parameters"] = {k: v for k, v in dict(hparams).items() if is_plain(v)}
    checkpoint["task_specs"] = [task.to_dict() for task in tasks]
    checkpoint["id2label"] = {task.name: list(task.labels) for task in tasks}


def coerce_tasks(tasks: Sequence[TaskSpec | Mapping[str, Any]] | None, owner: str) -> list[TaskSpec]:
    """Task specs from the DataModule link (or a checkpoint); a clear error when they are missing."""
    if not tasks:
        raise ValueError(
            f"{owner}: `tasks` is empty. The CLI links it from the DataModule; in code pass "
            "`tasks=datamodule.task_specs`"
        )
    return [TaskSpec.coerce(task) for task in tasks]


def resolve_task_weights(tasks: Sequence[TaskSpec], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Loss weight per task: 1.0 for every task unless given (equal weighting, as in the paper)."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - {task.name for task in tasks})
    if unknown:
        raise ValueError(f"task_weights: unknown task {unknown[0]!r}; tasks are {[t.name for t in tasks]}")
    return {task.name: float(weights.get(task.name, 1.0)) for task in tasks}


class TaskModule(L.LightningModule):
    """What both model families share: task specs, the train/val/test step plumbing around a model's own
    ``_evaluate(batch, stage)``, optimizer and scheduler from the config, self-describing checkpoints.

    Subclasses set ``self.tasks``, ``self.optimizer_factory`` and ``self.scheduler_factory`` in ``__init__``.
    """

    tasks: list[TaskSpec]

    def _evaluate(self, batch: dict[str, Any], stage: str) -> list[dict[str, Any]]:
        """Update the stage's metrics; return the batch's prediction rows for ``test``."""
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Updates the test metrics and returns the batch's prediction rows (for prediction tables)."""
        return self._evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sanitize_checkpoint(checkpoint, self.tasks)
