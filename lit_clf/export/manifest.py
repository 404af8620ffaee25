"""``lit_clf.json``: what an exported folder needs beside the Hugging Face files to answer as the module did.

It holds the module class and its options (prompt template and format, shots, decoding, task label sets,
``max_length``...), the folder's layout, and where the model was trained from. :func:`load_exported` rebuilds the
module from the folder alone; ``lit-clf test`` / ``predict`` take the folder as ``backbone``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "lit_clf.json"

#: Module options an exported folder replaces (the folder is the backbone, with its weights) or never uses.
NOT_EXPORTED = (
    "backbone",
    "tokenizer",
    "pretrained",
    "optimizer",
    "lr_scheduler",
    "lora",
    "load_in_4bit",
    "torch_dtype",
)


def write_manifest(directory: Path, module, layout: str, **extra: Any) -> Path:
    hparams = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_")}
    manifest = {
        "lit_clf_export": 1,
        "layout": layout,
        "class_path": f"{type(module).__module__}.{type(module).__qualname__}",
        "trained_from": hparams.get("backbone"),
        "init_args": {k: v for k, v in hparams.items() if k not in NOT_EXPORTED},
        **extra,
    }
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The folder's ``lit_clf.json``, or None for a folder lit_clf did not export."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("lit_clf_export") != 1:
        raise ValueError(f"{path}: not a lit_clf export manifest (lit_clf_export: 1)")
    return manifest


def load_exported(directory: str | Path, **overrides: Any):
    """The module an exported folder holds, built from the folder alone (its weights, tokenizer and
    ``lit_clf.json``); ``overrides`` replace module options (``decoding="score"``...)."""
    from lit_clf.module import TaskModule
    from lit_clf.trust import resolve

    manifest = read_manifest(directory)
    if manifest is None:
        raise ValueError(f"{directory}: no {MANIFEST}: not a folder `lit-clf export` wrote")
    if manifest.get("layout") == "peft-adapter":
        raise ValueError(
            f"{directory}: a LoRA adapter folder; load it with peft on its base model ({manifest.get('trained_from')}) "
            "or export with --merge_lora true"
        )
    cls = resolve(manifest["class_path"])
    if not (isinstance(cls, type) and issubclass(cls, TaskModule) and cls.__module__.startswith("lit_clf.")):
        raise ValueError(f"{directory}/{MANIFEST}: {manifest['class_path']} is not a lit_clf model")
    options = {**manifest["init_args"], **overrides, "backbone": str(directory), "pretrained": True}
    module = cls(**options)
    module.configure_model()
    return module.eval()


__all__ = ["MANIFEST", "load_exported", "read_manifest", "write_manifest"]
