"""A trained module rebuilt from any lit_clf checkpoint (a file, an FSDP1 sharded folder, an FSDP2 distributed
folder) in one process, without a Trainer, the data, or the pretrained weights.

The checkpoint's hyperparameters name the module class (trust-checked, :mod:`lit_clf.trust`); the model is built
from its config on the meta device (no memory, no download) and the checkpoint's tensors are assigned in place,
so a 70B export holds one copy of the weights, not two. The rotary embeddings' ``inv_freq`` (not saved in
checkpoints) is computed afresh from the model config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_clf.checkpoints import CheckpointError, check_finite, read_checkpoint, read_sharded_weights
from lit_clf.precision import ROTARY_BUFFERS
from lit_clf.trust import check_hparams, enforced, resolve

#: Hyperparameters a rebuilt module never uses (nothing is trained or downloaded).
_UNUSED = ("optimizer", "lr_scheduler")


def module_from_checkpoint(path: str | Path, allowed_class_paths: Sequence[str] = ()) -> nn.Module:
    """The lit_clf module a checkpoint holds, its weights loaded, in eval mode on the CPU."""
    from lit_clf.module import TaskModule

    path = Path(path)
    checkpoint = read_checkpoint(path)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    check_hparams(hparams, allowed_class_paths, f"ckpt_path: {path}: ")
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if not class_path:
        raise CheckpointError(f"ckpt_path: {path}: the checkpoint names no model class (not saved by lit-clf)")
    with enforced(allowed_class_paths):
        cls = resolve(class_path)
    if not (isinstance(cls, type) and issubclass(cls, TaskModule)):
        raise CheckpointError(f"ckpt_path: {path}: {class_path} is not a lit_clf model")
    weights = read_sharded_weights(path) if path.is_dir() else checkpoint["state_dict"]
    check_finite(weights, f"ckpt_path: {path}")
    options = {k: v for k, v in hparams.items() if k not in _UNUSED} | {"pretrained": False, "load_in_4bit": False}
    module = cls(**options)
    large = getattr(module, "causal", True)  # decoders (and decoder backbones) on meta; encoders are small
    with torch.device("meta") if large else torch.device("cpu"):
        module.configure_model()
    module.load_state_dict(dict(weights), strict=True, assign=True)
    restore_rotary_buffers(module)
    leftover = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if leftover:
        raise CheckpointError(f"ckpt_path: {path}: tensors the checkpoint does not hold: {', '.join(leftover[:5])}")
    return module.eval()


def restore_rotary_buffers(module: nn.Module) -> None:
    """Recompute every rotary embedding's meta-device buffers (``inv_freq``...) from its model config, in float32."""
    for owner in module.modules():
        if any(b.is_meta for n, b in owner.named_buffers(recurse=False) if n in ROTARY_BUFFERS):
            fresh = _rebuilt(owner)
            for name, buffer in fresh.named_buffers(recurse=False):
                setattr(owner, name, buffer.float() if buffer.is_floating_point() else buffer)


def _rebuilt(owner: nn.Module) -> Any:
    config = getattr(owner, "config", None)
    if config is None:
        raise CheckpointError(f"cannot recompute the buffers of {type(owner).__name__}: it keeps no model config")
    with torch.device("cpu"):
        return type(owner)(config=config)


__all__ = ["module_from_checkpoint", "restore_rotary_buffers"]
