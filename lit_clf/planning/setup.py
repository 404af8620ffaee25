"""A parsed ``lit-clf`` config (the namespace ``fit`` would run) -> the :class:`~lit_clf.planning.memory.RunSetup`
and model shape the memory arithmetic needs. Nothing is instantiated: no tokenizer, data or weights are read."""

from __future__ import annotations

from typing import Any

from lit_clf.planning.memory import RunSetup
from lit_clf.planning.shapes import ModelShape, model_shape
from lit_clf.trust import resolve

#: Answer positions a decoder's loss computes per row when ``max_new_tokens`` is unset (a slot list of a long
#: utterance; intent and topic answers take a few tokens).
DEFAULT_ANSWER_TOKENS = 128

_HALF = {"bf16-mixed", "16-mixed", "bf16-true", "16-true", "bf16", "16"}
_TRUE_HALF = {"bf16-true", "16-true"}


def _get(namespace: Any, key: str, default: Any = None) -> Any:
    value = namespace.get(key, default) if namespace is not None else default
    return default if value is None else value


def _devices(trainer: Any) -> int:
    devices = _get(trainer, "devices", 1)
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        if devices.strip() in ("auto", "-1"):
            import torch

            return max(torch.cuda.device_count(), 1)
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    return int(devices)


def _strategy(trainer: Any) -> tuple[str, bool, bool]:
    """(sharding, hybrid, cpu_offload) of the trainer's strategy option."""
    strategy = _get(trainer, "strategy", "auto")
    if isinstance(strategy, str):
        name = strategy.lower()
        kind = "fsdp1" if name.startswith("fsdp") else "ddp" if name.startswith("ddp") else "none"
        return kind, False, False
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    from lit_clf.sharding import FSDP2Strategy

    cls = resolve(strategy["class_path"])
    options = strategy.get("init_args") or {}
    if issubclass(cls, FSDP2Strategy):
        return "fsdp2", bool(options.get("hybrid")), bool(options.get("cpu_offload"))
    if issubclass(cls, FSDPStrategy):
        offload = options.get("cpu_offload")
        hybrid = str(options.get("sharding_strategy", "")).upper().startswith("HYBRID")
        return "fsdp1", hybrid, bool(offload) and offload is not False
    return ("ddp" if issubclass(cls, DDPStrategy) else "none"), False, False


def run_setup(config: Any, stage: str = "fit") -> tuple[ModelShape, RunSetup]:
    """The model's shape and the run's :class:`RunSetup` from a ``fit`` / ``test`` config namespace."""
    model, data, trainer = config.get("model"), config.get("data"), config.get("trainer")
    options = _get(model, "init_args", {})
    backbone = _get(options, "backbone")
    if not backbone:
        raise ValueError("model.init_args.backbone: unset; the plan needs the model's config.json")
    decoder = "Decoder" in str(_get(model, "class_path", ""))
    shape = model_shape(backbone, causal_lm=decoder)
    precision = str(_get(trainer, "precision", "32-true"))
    compute = 2 if precision in _HALF else 4
    dtype = _get(options, "torch_dtype")
    param = {"bfloat16": 2, "float16": 2, "float32": 4}.get(dtype, 2 if precision in _TRUE_HALF else 4)
    sharding, hybrid, offload = _strategy(trainer)
    max_length = int(_get(options, "max_length", 512))
    if shape.window:
        max_length = min(max_length, shape.window)  # the module caps it too (lit_clf.loading.within_context_window)
    answer = int(_get(options, "max_new_tokens", DEFAULT_ANSWER_TOKENS)) if decoder else 0
    batch = int(_get(data, "init_args", {}).get("batch_size") or 32)
    data_options = _get(data, "init_args", {})
    eval_rows = int(data_options.get("eval_batch_size") or batch)
    budget = data_options.get("eval_token_budget")
    row = max_length + answer  # the longest prompt and its answer budget
    if budget:  # the largest batch of longest rows within the budget (one row over it is a batch alone)
        eval_rows = min(eval_rows, max(1, int(budget) // row))
    eval_tokens = eval_rows * row
    optimizer = _get(options, "optimizer", {})
    optimizer_path = optimizer.get("class_path", "torch.optim.AdamW") if hasattr(optimizer, "get") else str(optimizer)
    checkpointing = bool(_get(options, "gradient_checkpointing", False))
    if sharding == "fsdp2":
        init = strategy_options(trainer)
        checkpointing = checkpointing or bool(init.get("activation_checkpointing", True))
    elif sharding == "fsdp1":
        checkpointing = checkpointing or bool(strategy_options(trainer).get("activation_checkpointing_policy"))
    setup = RunSetup(
        devices=_devices(trainer),
        nodes=int(_get(trainer, "num_nodes", 1)),
        sharding=sharding,
        hybrid=hybrid,
        cpu_offload=offload,
        param_bytes=param,
        compute_bytes=compute if param == 4 else param,
        optimizer=optimizer_path,
        lora=_get(options, "lora"),
        load_in_4bit=bool(_get(options, "load_in_4bit", False)),
        batch=batch,
        max_length=max_length,
        loss_positions=answer,
        activation_checkpointing=checkpointing,
        eval_tokens=eval_tokens,
        eval_rows=eval_rows,
        stage=stage,
    )
    return shape, setup


def strategy_options(trainer: Any) -> dict[str, Any]:
    strategy = _get(trainer, "strategy", "auto")
    return {} if isinstance(strategy, str) else dict(strategy.get("init_args") or {})


__all__ = ["DEFAULT_ANSWER_TOKENS", "run_setup"]
