"""``lit-clf export --ckpt_path CKPT --out DIR``: a trained module as a plain Hugging Face folder.

Reads any lit_clf checkpoint (a ``.ckpt`` file, an FSDP1 sharded folder, an FSDP2 distributed folder) in one
process without the data or a GPU, and writes:

* the decoder family: a causal-LM folder (bf16 safetensors, tokenizer, generation config), LoRA merged, or the
  adapter alone (``--merge_lora false``);
* the head-based family: ``*ForTokenClassification`` / ``*ForSequenceClassification`` where one task maps onto
  it exactly (``transformers.pipeline`` and vLLM read it), else the lit_clf layout (:mod:`lit_clf.export.heads`);
* ``lit_clf.json`` in both: the module class and options (prompt template and format, shots, decoding, label sets),
  so ``lit-clf test --model.init_args.backbone DIR`` (with the run's config) or
  ``lit_clf.export.load_exported(DIR)`` answers exactly as the module did.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
import yaml

from lit_clf.export.restore import module_from_checkpoint

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lit-clf export",
        description="Write a trained lit_clf module (any checkpoint kind) as a plain Hugging Face folder with "
        "lit_clf.json beside it.",
    )
    p.add_argument("--ckpt_path", required=True, help="The checkpoint: a .ckpt file or a sharded checkpoint folder.")
    p.add_argument("--out", required=True, help="The folder to write (refused if it exists, unless --overwrite).")
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        help="The run's config file(s): optional; when given, their model class must be the checkpoint's.",
    )
    p.add_argument(
        "--merge_lora",
        type=lambda v: v.lower() in ("1", "true", "yes"),
        default=True,
        help="LoRA: merge the adapters into the exported weights (true, default) or write the adapter alone.",
    )
    p.add_argument(
        "--dtype",
        choices=sorted(_DTYPES),
        default=None,
        help="The exported weights' dtype; default bfloat16 for decoders, float32 for the head-based family.",
    )
    p.add_argument("--overwrite", action="store_true", help="Replace an existing --out folder.")
    p.add_argument(
        "--allow_class_path",
        default="",
        help="Class paths of your own the checkpoint may name, comma-separated (README: Safety).",
    )
    return p


def export_main(args: list[str]) -> Path:
    """``lit-clf export ARGS``; returns the folder written."""
    options = parser().parse_args(args)
    out = Path(options.out)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise ValueError(f"--out: {out} exists and is not empty; give another folder or --overwrite")
    allowed = tuple(p for p in options.allow_class_path.split(",") if p)
    module = module_from_checkpoint(options.ckpt_path, allowed)
    for config in options.config:
        model = (yaml.safe_load(Path(config).read_text()) or {}).get("model") or {}
        class_path = model.get("class_path") if isinstance(model, dict) else None
        if class_path and class_path.rsplit(".", 1)[-1] != type(module).__name__:
            held = type(module).__name__
            raise ValueError(f"--config {config}: its model is {class_path}, the checkpoint holds a {held}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if getattr(module, "generative", False):
        from lit_clf.export.decoder import export_decoder

        layout = export_decoder(module, out, _DTYPES[options.dtype or "bfloat16"], options.merge_lora)
    else:
        from lit_clf.export.heads import export_heads

        layout = export_heads(module, out, _DTYPES[options.dtype or "float32"])
    print(f"lit-clf export: {out} ({layout}, from {options.ckpt_path})")
    return out


__all__ = ["export_main", "parser"]
