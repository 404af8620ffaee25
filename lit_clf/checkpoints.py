"""Reading checkpoints safely and checking what they hold: readable, finite, and the label sets the data needs.

Every failure is a :class:`CheckpointError` (a ``ValueError``, so ``lit-clf`` prints it on one line) that names the
file and what to do.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lit_clf.data.tasks import TaskSpec

__all__ = ["CheckpointError", "check_finite", "check_label_sets", "read_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, damaged, of another model, or for other labels."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True`` and memory-mapped (weights are read only when
    used); a one-line :class:`CheckpointError` if it is missing, empty, truncated or not a checkpoint."""
    path = Path(path)
    if path.is_dir():  # a sharded (FSDP) checkpoint: the weights in shards, the rest in meta.pt
        if not (path / "meta.pt").is_file():
            raise CheckpointError(f"ckpt_path: {path}: a folder without meta.pt, not a sharded checkpoint")
        meta = _load(path / "meta.pt", path)
        if not isinstance(meta, dict):
            raise CheckpointError(f"ckpt_path: {path}: meta.pt is not a Lightning checkpoint's metadata")
        return meta
    if not path.is_file():
        raise CheckpointError(f"ckpt_path: {path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"ckpt_path: {path}: empty file (an interrupted save?)")
    checkpoint = _load(path, path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path: {path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _load(file: Path, path: Path) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0].split(". ")[0].rstrip(".")
        if "Unsupported global" in str(err):
            reason = "it holds Python objects beyond tensors and plain data, refused (weights_only=True)"
        elif "Weights only load failed" in reason:
            reason = "damaged, or not a PyTorch checkpoint"
        raise CheckpointError(f"ckpt_path: {path}: not a readable checkpoint ({reason})") from None


def check_finite(state_dict: Mapping[str, Any], where: str) -> None:
    """A :class:`CheckpointError` naming the first floating-point tensor of ``state_dict`` with NaN or infinite
    values (a damaged file, or a run that diverged before it was saved)."""
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(
                f"{where}: weight {name!r} has NaN or infinite values (a damaged file, or a run that diverged "
                "before this checkpoint); use another checkpoint"
            )


def check_label_sets(trained: Sequence[TaskSpec], data: Sequence[TaskSpec], where: str) -> None:
    """A :class:`CheckpointError` unless the data can be scored by a model trained on ``trained``: the same task
    names, and every label of the data known to the model (the data may use fewer labels than the model, e.g. a
    test subset). The model's label order is the one used: class ids are the checkpoint's."""
    names = [task.name for task in trained]
    if sorted(names) != sorted(task.name for task in data):
        raise CheckpointError(
            f"{where}: the checkpoint was trained on tasks {names}, the data has {[task.name for task in data]}; "
            "set data.init_args.tasks to the checkpoint's tasks"
        )
    by_name = {task.name: task for task in trained}
    for task in data:
        known = by_name[task.name]
        if task.kind != known.kind:
            raise CheckpointError(
                f"{where}: task {task.name!r} is a {known.kind} task in the checkpoint, {task.kind} here"
            )
        unknown = [label for label in task.labels if label not in known.label2id]
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise CheckpointError(
                f"{where}: task {task.name!r}: the data has {len(unknown)} label(s) the checkpoint's model does not "
                f"know ({shown}); it was trained on {known.num_labels} labels. Use data with the checkpoint's label "
                "set, or fine-tune on this data"
            )
