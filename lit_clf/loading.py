"""Model loading in one function: dtype, 4-bit (QLoRA), LoRA, rank-0 loading under FSDP, checkpointing.

Used by the decoder module (``AutoModelForCausalLM``) and by the head-based module on decoder backbones
(``AutoModel``, no LM head).
"""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext
from typing import Any, Literal

import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationConfig

from lit_clf.compat import fsdp_wrap_options
from lit_clf.precision import fsdp_mixed_precision
from lit_clf.sharding import is_fsdp2

#: Trainer precision -> dtype the weights are loaded in when ``torch_dtype`` is unset (others: float32).
PRECISION_DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16}

TorchDtype = Literal["auto", "float32", "bfloat16", "float16"]


def check_load_options(load_in_4bit: bool, lora: dict[str, Any] | None, pretrained: bool) -> None:
    """One-line error for a loading combination that cannot work, raised before any weights are read."""
    if load_in_4bit and (lora is None or not pretrained):
        raise ValueError(
            "load_in_4bit (QLoRA) trains LoRA adapters on pretrained 4-bit weights: set lora and pretrained"
        )
    if lora is not None:
        require_extra("peft", "lora", "lora")
    if load_in_4bit:
        require_extra("bitsandbytes", "qlora", "load_in_4bit")


def require_extra(package: str, extra: str, option: str) -> None:
    """A one-line error when ``option`` needs ``package`` (an optional dependency) and it is not installed."""
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"{option}: needs the {package} package, not installed here: pip install 'lit_clf[{extra}]'")


def load_causal_lm(name: str, **options: Any) -> nn.Module:
    """An ``AutoModelForCausalLM`` ready to train (:func:`load_model`)."""
    return load_model(name, auto_class=AutoModelForCausalLM, **options)


def load_model(
    name: str,
    *,
    auto_class: type = AutoModel,
    pretrained: bool = True,
    torch_dtype: TorchDtype | None = None,
    load_in_4bit: bool = False,
    lora: dict[str, Any] | None = None,
    gradient_checkpointing: bool = False,
    attn_implementation: str | None = None,
    trainer=None,
) -> nn.Module:
    """A transformers model ready to train, in training mode.

    Args:
        name: Hub id or local folder (no remote code).
        auto_class: ``AutoModelForCausalLM`` (with the LM head) or ``AutoModel`` (the bare backbone).
        pretrained: Load the pretrained weights; ``False`` builds the architecture from its config, random weights.
        torch_dtype: Weights' dtype (``auto`` = the checkpoint's). Unset: bfloat16 under ``precision: bf16-true``,
            float16 under ``16-true``, else float32 (mixed precision keeps float32 master weights).
        load_in_4bit: QLoRA: NF4 base weights through bitsandbytes (a CUDA GPU and ``lora``).
        lora: ``peft.LoraConfig`` arguments: train LoRA adapters instead of every weight.
        gradient_checkpointing: transformers' own activation checkpointing (under FSDP use the strategy's policy).
        attn_implementation: transformers' attention kernel (``sdpa``, ``eager``, ``flex_attention``...); unset:
            transformers' default for the model.
        trainer: The Lightning Trainer, if any: its precision, device and strategy. Under FSDP on several devices
            only rank 0 reads the weights; the other ranks build the model on the meta device and FSDP broadcasts
            rank 0's weights while it shards (FSDP1: ``sync_module_states``; FSDP2:
            :meth:`lit_clf.sharding.FSDP2Strategy.parallelize`), saving (world size - 1) host copies.
    """
    dtype = _weights_dtype(torch_dtype, trainer)
    if trainer is not None and isinstance(trainer.strategy, FSDPStrategy):
        fsdp_mixed_precision(trainer.strategy, trainer.precision)  # rotary buffers and gradient reduction in fp32
    kernel = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if load_in_4bit:
        model = auto_class.from_pretrained(name, **_4bit_kwargs(dtype, trainer), **kernel)
    else:
        # Rank 0 alone reads (or, random, builds) the weights; FSDP broadcasts them while it shards (FSDP2 in
        # configure_model: lit_clf.sharding), so the others build on the meta device.
        broadcast = (pretrained and _rank0_loads_for_fsdp(trainer)) or is_fsdp2(trainer)
        empty = broadcast and trainer.global_rank > 0
        if pretrained and not empty:
            model = auto_class.from_pretrained(name, dtype=dtype, **kernel)
        else:
            with torch.device("meta") if empty else nullcontext():
                model = auto_class.from_config(
                    AutoConfig.from_pretrained(name), dtype=None if dtype == "auto" else dtype, **kernel
                )
            _read_generation_config(model, name)
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
    if load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        task_type = "CAUSAL_LM" if auto_class is AutoModelForCausalLM else "FEATURE_EXTRACTION"
        model = get_peft_model(model, LoraConfig(task_type=task_type, **lora))
    return model.train()  # from_pretrained returns eval mode; Lightning keeps submodules' modes


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing of every layer: ``activation_checkpointing_enable`` (transformers
    >= 5.25; its older name ``gradient_checkpointing_enable`` is deprecated there)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def context_window(config) -> int | None:
    """The positions a model was trained for: ``max_position_embeddings``, times ``rope_scaling``'s factor for a
    linear or dynamic scaling stated against it (configs that give ``original_max_position_embeddings`` already
    state the scaled window, as Llama 3.1's does). None when the config states none."""
    window = getattr(config, "max_position_embeddings", None)
    if not isinstance(window, int):
        return None
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in ("linear", "dynamic") and "original_max_position_embeddings" not in scaling:
        window = int(window * float(scaling.get("factor", 1.0)))
    return window


def within_context_window(max_length: int, config, option: str) -> int:
    """``max_length`` capped to the model's :func:`context_window`, with one warning naming both numbers: past the
    trained positions a model's outputs are not what it learned (the paper's 16,384 against Llama 2's 4,096)."""
    window = context_window(config)
    if window is None or max_length <= window:
        return max_length
    rank_zero_warn(
        f"{option}={max_length:,} is past the model's context window of {window:,} positions "
        f"(max_position_embeddings{', rope_scaling' if getattr(config, 'rope_scaling', None) else ''}): capped to "
        f"{window:,}; longer prompts have their texts cut, never the answer"
    )
    return window


def _read_generation_config(model: nn.Module, name: str) -> None:
    """The model's ``generation_config.json``, as ``from_pretrained`` reads it, for a model built from its config
    (the ranks > 0 under FSDP, or random weights): otherwise those ranks would take the generation settings of
    ``config.json`` and, for Llama-3-Instruct, stop on other end tokens than rank 0 (``<|eot_id|>`` missing)."""
    if getattr(model, "generation_config", None) is None:
        return
    try:
        model.generation_config = GenerationConfig.from_pretrained(name)
    except OSError:  # none in the folder or on the hub: the config's own, as from_pretrained keeps too
        pass


def _weights_dtype(torch_dtype: str | None, trainer) -> torch.dtype | str:
    if torch_dtype is not None:
        return torch_dtype if torch_dtype == "auto" else getattr(torch, torch_dtype)
    precision = str(trainer.precision) if trainer is not None else "32-true"
    return PRECISION_DTYPES.get(precision, torch.float32)


def _4bit_kwargs(dtype: torch.dtype | str, trainer) -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise RuntimeError("load_in_4bit: bitsandbytes 4-bit (QLoRA) loading needs a CUDA GPU; none is visible")
    from transformers import BitsAndBytesConfig

    compute = dtype if dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )
    device = trainer.strategy.root_device if trainer is not None else torch.device("cuda")
    return {"quantization_config": quantization, "dtype": compute, "device_map": {"": device}}


def _rank0_loads_for_fsdp(trainer) -> bool:
    """Under FSDP on several devices: set the strategy to broadcast rank 0's weights while it shards.

    Sets ``sync_module_states`` and a ``param_init_fn`` that allocates the meta tensors of ranks > 0 (the
    strategy's options are read when it wraps the model, after ``configure_model``).
    """
    if trainer is None or not isinstance(trainer.strategy, FSDPStrategy) or trainer.world_size < 2:
        return False
    strategy = trainer.strategy
    device = strategy.root_device
    options = fsdp_wrap_options(strategy)
    options["sync_module_states"] = True
    options.setdefault("param_init_fn", lambda module: module.to_empty(device=device, recurse=False))
    return True


__all__ = [
    "PRECISION_DTYPES",
    "TorchDtype",
    "check_load_options",
    "context_window",
    "enable_activation_checkpointing",
    "load_causal_lm",
    "load_model",
    "within_context_window",
]
