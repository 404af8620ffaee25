"""A head-based module (``EncoderSeqTokenModule``) as a Hugging Face folder.

With one task the head maps exactly onto a transformers class, the folder has that class's layout, so
``AutoModelFor...``, ``transformers.pipeline`` and vLLM's classify read it:

* one token task: ``*ForTokenClassification`` (a linear layer with bias on every position's hidden state: the
  module's token head, for encoders and causal decoders alike);
* one sequence task on a causal decoder read at its last token with a bias-free head (``head_bias: false``):
  ``*ForSequenceClassification`` (its ``score`` layer has no bias). An encoder's ``*ForSequenceClassification``
  adds a pooler (dense + tanh) the module does not have, and a biased head cannot be written as ``score``: those,
  and several tasks, keep the lit_clf layout (the backbone's own folder, ``heads.safetensors``, the task specs).

Every layout carries ``lit_clf.json``; a folder of either layout is a ``backbone`` lit_clf reloads with its heads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from lit_clf.export.manifest import read_manifest, write_manifest


def hf_layout(module) -> str | None:
    """``token-classification``, ``sequence-classification`` or None (the lit_clf layout) for ``module``."""
    if len(module.tasks) != 1:
        return None
    task = module.tasks[0]
    if task.kind == "token":
        return "token-classification"
    head = module.heads[task.name][-1]
    if task.kind == "sequence" and module.causal and module.pooling == "last" and head.bias is None:
        return "sequence-classification"
    return None


def export_heads(module, directory: Path, dtype: torch.dtype = torch.float32) -> str:
    """Write ``module`` to ``directory`` in the layout :func:`hf_layout` picks; returns it."""
    layout = hf_layout(module)
    if layout is None:
        module.export_pretrained(directory)
        write_manifest(directory, module, "lit-clf-heads")
        return "lit-clf-heads"
    model = _classification_model(module, layout)
    model.to(dtype).save_pretrained(directory)
    module.tokenizer.save_pretrained(directory)
    write_manifest(directory, module, layout, head=_head_name(model), dtype=str(dtype).removeprefix("torch."))
    return layout


def _classification_model(module, layout: str) -> nn.Module:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    task = module.tasks[0]
    backbone = module.built_backbone()
    if hasattr(backbone, "merge_and_unload"):  # LoRA: merged into the exported weights
        backbone = backbone.merge_and_unload()
    config = backbone.config.__class__.from_dict(backbone.config.to_dict())
    config.num_labels = len(task.labels)
    config.id2label = dict(enumerate(task.labels))
    config.label2id = {label: i for i, label in enumerate(task.labels)}
    if module.tokenizer.pad_token_id is not None:
        config.pad_token_id = module.tokenizer.pad_token_id
    auto = AutoModelForTokenClassification if layout == "token-classification" else AutoModelForSequenceClassification
    with torch.device("meta"):
        model = auto.from_config(config)
    prefix, head = model.base_model_prefix, _head_name(model)
    wanted = model.state_dict()
    state = {f"{prefix}.{k}": v for k, v in backbone.state_dict().items() if f"{prefix}.{k}" in wanted}
    linear = module.heads[task.name][-1]
    state[f"{head}.weight"] = linear.weight.detach()
    if linear.bias is not None:
        state[f"{head}.bias"] = linear.bias.detach()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ValueError(f"export: {type(model).__name__} has weights the module does not: {', '.join(missing[:5])}")
    model.load_state_dict(state, strict=True, assign=True)
    from lit_clf.export.restore import restore_rotary_buffers

    restore_rotary_buffers(model)
    return model.eval()


def _head_name(model: nn.Module) -> str:
    """The classifier layer's name in a transformers classification model (``classifier``, ``score``)."""
    names = [n for n, m in model.named_children() if isinstance(m, nn.Linear)]
    if len(names) != 1:
        raise ValueError(f"export: {type(model).__name__} has no single linear classifier ({names})")
    return names[0]


def load_exported_heads(module, directory: str | Path) -> bool:
    """Fill ``module``'s heads from an exported folder it uses as its backbone; False for a folder lit_clf did not
    export (the heads keep their initialization)."""
    manifest = read_manifest(directory)
    if manifest is None or manifest.get("layout") not in ("token-classification", "sequence-classification"):
        if manifest is not None and manifest.get("layout") == "lit-clf-heads":
            from lit_clf.encoder.module import HEADS_FILE

            module.heads.load_state_dict(load_file(Path(directory) / HEADS_FILE))
            return True
        return False
    head, names = manifest["head"], [task.name for task in module.tasks]
    weights = _read_weights(Path(directory), head)
    if len(names) != 1:
        raise ValueError(f"{directory}: a one-task export ({manifest['layout']}), the module has tasks {names}")
    state = {"weight": weights[f"{head}.weight"]}
    if f"{head}.bias" in weights:
        state["bias"] = weights[f"{head}.bias"]
    module.heads[names[0]][-1].load_state_dict(state)
    return True


def _read_weights(directory: Path, head: str) -> dict[str, torch.Tensor]:
    """The classifier's tensors alone from the folder's safetensors files (the backbone's are not read)."""
    out: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(file, framework="pt") as weights:
            out.update({k: weights.get_tensor(k) for k in weights.keys() if k.startswith(f"{head}.")})
    if f"{head}.weight" not in out:
        raise ValueError(f"{directory}: no {head}.weight in its safetensors files")
    return out


__all__ = ["export_heads", "hf_layout", "load_exported_heads"]
