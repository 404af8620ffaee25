"""A fine-tuned decoder as a plain Hugging Face causal-LM folder: bf16 safetensors, tokenizer (chat template
included), generation config, LoRA merged (or kept as an adapter folder), and ``lit_clf.json``."""

from __future__ import annotations

from pathlib import Path

import torch

from lit_clf.export.manifest import write_manifest
from lit_clf.sharding import hf_model


def export_decoder(module, directory: Path, dtype: torch.dtype = torch.bfloat16, merge_lora: bool = True) -> str:
    """Write ``module`` (a ``DecoderGenerativeModule``) to ``directory``; returns the layout written."""
    backbone = module.built_backbone()
    adapter = hasattr(backbone, "peft_config")
    if adapter and not merge_lora:  # the adapter weights alone; the base model is the one trained from
        backbone.save_pretrained(directory)
        layout = "peft-adapter"
    else:
        model = backbone.merge_and_unload() if adapter else hf_model(backbone)
        model.to(dtype).save_pretrained(directory)
        layout = "causal-lm"
    module.tokenizer.save_pretrained(directory)
    write_manifest(directory, module, layout, dtype=str(dtype).removeprefix("torch."))
    return layout


__all__ = ["export_decoder"]
