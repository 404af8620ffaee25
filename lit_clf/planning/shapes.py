"""A model's shape from its ``config.json`` alone: parameter counts per unit, built on the meta device (no weights
read, no memory), for :mod:`lit_clf.planning.memory`.

The paper's four architectures ship with lit_clf (``lit_clf/planning/model_configs``), so a plan of a Table 3 row
works offline and before the gated weights are downloaded; any other model's ``config.json`` is read from its
folder or the Hugging Face cache (or the hub, when online).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODEL_CONFIGS = Path(__file__).with_name("model_configs")

#: Hub ids whose architecture is one of the shipped configs (chat / instruct variants share their base's shapes).
_SHIPPED = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-7b-chat-hf": "llama-2-7b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "meta-llama/Llama-2-70b-chat-hf": "llama-2-70b",
    "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama-3-8b",
    "meta-llama/Meta-Llama-3-70B": "llama-3-70b",
    "meta-llama/Meta-Llama-3-70B-Instruct": "llama-3-70b",
}


@dataclass(frozen=True)
class ModelShape:
    """What the memory arithmetic needs of a model.

    Attributes:
        name: The backbone as configured.
        parameters: All parameters.
        layer_parameters: Parameters of one repeated decoder layer (the FSDP unit).
        root_parameters: Parameters outside the layers (embeddings, final norm, output head): FSDP's root unit.
        linear_parameters: Parameters of the layers' linear projections (what 4-bit quantizes, LoRA adapts).
        layers: Decoder layers.
        hidden: Hidden size ``d``.
        intermediate: MLP size ``f``.
        kv_width: ``key/value heads x head dim`` (the KV cache per token and layer is twice that).
        vocab: Vocabulary size.
        window: The model's context window, if stated.
        projections: ``(name, in, out)`` of every linear projection in the layers (``q_proj``...).
    """

    name: str
    parameters: int
    layer_parameters: int
    root_parameters: int
    linear_parameters: int
    layers: int
    hidden: int
    intermediate: int
    kv_width: int
    vocab: int
    window: int | None
    projections: tuple[tuple[str, int, int], ...] = ()

    def lora_parameters(self, lora: dict[str, Any] | None) -> int:
        """Parameters of the LoRA adapters ``lora`` (``r`` x (in + out) per adapted projection)."""
        if not lora:
            return 0
        rank, targets = int(lora.get("r", 8)), lora.get("target_modules")
        names = None if targets in (None, "all-linear") else set([targets] if isinstance(targets, str) else targets)
        return sum(rank * (i + o) for name, i, o in self.projections if names is None or name in names)


def read_model_config(name: str):
    """The transformers config of ``name``: a shipped paper config, a local folder, or the hub / its cache."""
    from transformers import AutoConfig, LlamaConfig

    shipped = _SHIPPED.get(name)
    if shipped is not None:
        return LlamaConfig(**json.loads((MODEL_CONFIGS / f"{shipped}.json").read_text()))
    try:
        return AutoConfig.from_pretrained(name)
    except OSError as err:
        raise ValueError(
            f"model.init_args.backbone: no config.json for {name!r} (not a folder, not in the Hugging Face cache, "
            f"and the hub is unreachable): {str(err).splitlines()[0][:160]}"
        ) from None


def model_shape(name: str, causal_lm: bool = True) -> ModelShape:
    """:class:`ModelShape` of ``name``, counted on a meta-device instance of its causal-LM class (the decoder
    family), or of its bare backbone (``causal_lm=False``: the head-based family, whose heads are negligible)."""
    from transformers import AutoModel, AutoModelForCausalLM

    from lit_clf.loading import context_window
    from lit_clf.sharding import decoder_layers

    config = read_model_config(name)
    with torch.device("meta"):
        model = (AutoModelForCausalLM if causal_lm else AutoModel).from_config(config)
    layers = decoder_layers(model)
    per_layer = _count(layers[0])
    total = _count(model)
    projections = tuple(
        (child.rsplit(".", 1)[-1], module.in_features, module.out_features)
        for layer in layers
        for child, module in layer.named_modules()
        if isinstance(module, nn.Linear)
    )
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    shape = ModelShape(
        name=name,
        parameters=total,
        layer_parameters=per_layer,
        root_parameters=total - per_layer * len(layers),
        linear_parameters=sum(i * o for _, i, o in projections),
        layers=len(layers),
        hidden=hidden,
        intermediate=getattr(config, "intermediate_size", 4 * hidden),
        kv_width=(getattr(config, "num_key_value_heads", None) or heads) * head_dim,
        vocab=config.vocab_size,
        window=context_window(config),
        projections=projections,
    )
    return shape


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["MODEL_CONFIGS", "ModelShape", "model_shape", "read_model_config"]
