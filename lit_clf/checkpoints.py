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
from lightning.fabric.plugins import TorchCheckpointIO
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from lit_clf.data.tasks import TaskSpec

__all__ = [
    "CheckpointError",
    "FolderCheckpointIO",
    "check_finite",
    "FINGERPRINT",
    "check_fingerprint",
    "check_label_sets",
    "has_optimizer_state",
    "read_checkpoint",
    "read_sharded_weights",
    "weights_fingerprint",
]


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


def has_optimizer_state(path: str | Path, checkpoint: Mapping[str, Any]) -> bool:
    """Whether a checkpoint (read by :func:`read_checkpoint`) can resume a fit: it holds optimizer states (a
    ``save_weights_only`` checkpoint does not; a sharded folder keeps them in its shards)."""
    if Path(path).is_dir():
        keys = _SafeReader(Path(path)).read_metadata().state_dict_metadata
        return any(key.startswith("optim") for key in keys)
    return "optimizer_states" in checkpoint


def read_sharded_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The whole ``state_dict`` of a sharded checkpoint folder (FSDP1 ``state_dict_type: sharded``, FSDP2
    distributed), in one process without any process group, as plain CPU tensors: what a one-device test, predict
    or export reads. Its ``.metadata`` index is unpickled with only checkpoint-index classes allowed (torch's own
    reader would run any pickled code), the tensors with ``weights_only`` loading."""
    from lit_clf.compat import read_distributed_checkpoint

    path = Path(path)
    read_checkpoint(path)  # a folder with a readable meta.pt, or a one-line error
    reader = _SafeReader(path)
    reader.read_metadata()  # refused or damaged: a CheckpointError here (inside torch's loader it gets wrapped)
    try:
        loaded = read_distributed_checkpoint(reader, keys={"state_dict", "model"})  # FSDP2's key; FSDP1's
    except Exception as err:  # noqa: BLE001 - any failure of torch's reader is this folder's damage
        reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(f"ckpt_path: {path}: not a readable sharded checkpoint ({reason})") from None
    state = loaded.get("state_dict") or loaded.get("model")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"ckpt_path: {path}: the sharded checkpoint holds no model weights (state_dict)")
    return state


class FolderCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader for one process (one device, DDP), which also reads a sharded checkpoint
    folder whole (:func:`read_sharded_weights`): ``lit-clf test`` on one GPU of what FSDP trained on eight. Only
    the weights: a folder's optimizer state resumes only under a sharded strategy."""

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if Path(path).is_dir():
            return {**read_checkpoint(path), "state_dict": read_sharded_weights(path)}
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)


class _SafeReader(FileSystemReader):
    """``FileSystemReader`` whose checkpoint index is unpickled by :class:`_IndexUnpickler`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        file = Path(self.path) / ".metadata"
        if not file.is_file():
            raise CheckpointError(f"ckpt_path: {self.path}: no .metadata index, not a sharded checkpoint")
        with file.open("rb") as stream:
            try:
                metadata = _IndexUnpickler(stream).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
                raise CheckpointError(f"ckpt_path: {self.path}: .metadata refused or damaged ({err})") from None
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class _IndexUnpickler(pickle.Unpickler):
    """Unpickles a ``torch.distributed.checkpoint`` index: its metadata dataclasses, ``torch.Size``, dtypes,
    layouts and paths; any other global (``os.system``...) is refused."""

    _PLAIN = {("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            module.startswith("torch.distributed.checkpoint.")
            or (module, name) in self._PLAIN
            or (module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.memory_format)))
            or (module == "pathlib" and name in ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"))
        )
        if not allowed:
            raise pickle.UnpicklingError(f"refused global {module}.{name} in a checkpoint index")
        return super().find_class(module, name)


#: What torch.load raises on a file that is not a checkpoint (a text file: KeyError or IndexError from pickle).
_LOAD_ERRORS = (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, KeyError, IndexError)


def _load(file: Path, path: Path) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        ValueError,
        KeyError,
        IndexError,
    ) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0].split(". ")[0].rstrip(".")
        if "Unsupported global" in str(err):
            reason = "it holds Python objects beyond tensors and plain data, refused (weights_only=True)"
        elif "Weights only load failed" in reason or isinstance(err, (KeyError, IndexError)):  # text, not pickle
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


#: Checkpoint key of :func:`weights_fingerprint`.
FINGERPRINT = "weights_fingerprint"


def weights_fingerprint(state_dict: Mapping[str, Any]) -> dict[str, list[float]] | None:
    """Per floating-point weight, the float64 sum and sum of squares of its values: saved with a checkpoint and
    checked on load (:func:`check_fingerprint`), so damage that leaves the values finite (a block of zeros) is
    found. None for a sharded state dict (DTensor / ShardedTensor shards: each rank holds a part)."""
    out = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
            return None
        values = value.detach().double()
        out[name] = [float(values.sum()), float(values.square().sum())]
    return out


def check_fingerprint(state_dict: Mapping[str, Any], saved: Mapping[str, Any] | None, where: str) -> None:
    """A :class:`CheckpointError` naming the first weight whose values do not add up to the sums saved with them."""
    if not saved:
        return
    now = weights_fingerprint(state_dict) or {}
    for name, (total, squares) in saved.items():
        if name not in now:
            continue
        got_total, got_squares = now[name]
        if not (_close(got_total, total) and _close(got_squares, squares)):
            raise CheckpointError(
                f"{where}: weight {name!r} does not match the fingerprint saved with it (the file was damaged after "
                "it was written); use another checkpoint"
            )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)  # float64 sums in another order: ~1e-15 apart


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
