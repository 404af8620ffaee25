"""Memory arithmetic of a run, per device and per node, from the model's shape and the run's settings.

Each term is bytes on one device (or one node's host). The training peak follows the order things live in a step:
weights and optimizer states always; during backward either the gradients fill up (the checkpointed layer inputs
are freed as backward passes each layer) or, at its start, the checkpointed inputs and the loss's logits are all
held; one layer's recompute working set on top; under FSDP the gathered units too::

    training peak = weights + optimizer + gathered + max(gradients, checkpointed inputs + logits) + layer working set

Evaluation holds the weights (and within ``fit`` the optimizer states; gradients are freed after each step), the
KV cache of the evaluation batch and one layer's prefill working set. Checked against measured GPU runs in
``tests/test_planning.py`` (docs/BENCHMARKS.md's 8B rows on one H100: within 2 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lit_clf.planning.shapes import ModelShape

GiB = 2**30

#: Optimizer class name -> (bytes of state per trainable parameter given the parameters' bytes, paged).
#: torch's Adam family keeps two moments in the parameters' dtype; 8-bit optimizers keep two 1-byte moments and a
#: float32 scale per block (torchao: 256 values; bitsandbytes: 2,048); paged ones live in CUDA unified memory, which
#: the driver evicts to the host under pressure (outside torch's allocated memory).
_OPTIMIZERS: dict[str, tuple[str, bool]] = {
    "AdamW": ("2p", False),
    "Adam": ("2p", False),
    "SGD": ("1p", False),
    "torchao.optim.AdamW8bit": ("2.031", False),
    "lit_clf.optim.AdamW8bit": ("2.031", False),
    "torchao.optim.Adam8bit": ("2.031", False),
    "torchao.optim.AdamW4bit": ("1.0625", False),
    "torchao.optim.AdamWFp8": ("2.0", False),
    "bitsandbytes.optim.AdamW8bit": ("2.004", False),
    "bitsandbytes.optim.Adam8bit": ("2.004", False),
    "bitsandbytes.optim.PagedAdamW8bit": ("2.004", True),
    "bitsandbytes.optim.PagedAdamW": ("8", True),
    "bitsandbytes.optim.PagedAdamW32bit": ("8", True),
}


def optimizer_state(class_path: str, param_bytes: float) -> tuple[float, bool]:
    """(bytes of optimizer state per trainable parameter, paged) for ``class_path``; an optimizer not known here
    counts as Adam (two moments in the parameters' dtype)."""
    rule, paged = _OPTIMIZERS.get(class_path) or _OPTIMIZERS.get(class_path.rsplit(".", 1)[-1], ("2p", False))
    per = float(rule[:-1]) * param_bytes if rule.endswith("p") else float(rule)
    return per, paged


@dataclass(frozen=True)
class RunSetup:
    """The settings of a run that decide its memory (what ``lit-clf plan`` reads from the config).

    Attributes:
        devices: Processes (devices) per node.
        nodes: Nodes.
        sharding: ``none`` (one device), ``ddp``, ``fsdp1`` or ``fsdp2``.
        hybrid: Shard within a node only (replicate across nodes).
        cpu_offload: Parameters, gradients and optimizer states on the host (FSDP1 ``CPUOffload``, FSDP2
            ``CPUOffloadPolicy``).
        param_bytes: Bytes of a (master) parameter: 4 for float32, 2 for bf16.
        compute_bytes: Bytes of a parameter as computed with (2 under bf16 mixed or true precision).
        optimizer: The optimizer's class path.
        lora: LoRA options, if adapters alone train.
        load_in_4bit: NF4 base weights (QLoRA).
        batch: Training rows per device.
        max_length: Tokens of a training row (the longest prompts fill it).
        loss_positions: Positions per row whose logits the loss computes (the decoder: the answer's; a plain
            language-model loss: every one).
        activation_checkpointing: Recompute each layer in backward.
        eval_tokens: Tokens of the largest evaluation batch (rows x (prompt + answer budget), or the token budget).
        eval_rows: Rows of that batch.
        stage: ``fit`` (training, then evaluation with the optimizer alive) or ``test`` (evaluation alone).
    """

    devices: int = 1
    nodes: int = 1
    sharding: str = "none"
    hybrid: bool = False
    cpu_offload: bool = False
    param_bytes: float = 4
    compute_bytes: float = 2
    optimizer: str = "torch.optim.AdamW"
    lora: dict | None = None
    load_in_4bit: bool = False
    batch: int = 1
    max_length: int = 2048
    loss_positions: int = 64
    activation_checkpointing: bool = True
    eval_tokens: int = 8 * 2048
    eval_rows: int = 8
    stage: str = "fit"

    @property
    def world(self) -> int:
        return self.devices * self.nodes

    @property
    def shards(self) -> int:
        """Ways each parameter is split: the whole job, a node (hybrid), or none (one device, DDP)."""
        if self.sharding not in ("fsdp1", "fsdp2"):
            return 1
        return self.devices if self.hybrid else self.world


@dataclass
class Plan:
    """Per device and per node terms in bytes, the peaks, and what was assumed."""

    shape: ModelShape
    setup: RunSetup
    device: dict[str, float] = field(default_factory=dict)
    host: dict[str, float] = field(default_factory=dict)
    training_peak: float = 0.0
    evaluation_peak: float = 0.0
    host_peak: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def device_peak(self) -> float:
        return max(self.training_peak, self.evaluation_peak) if self.setup.stage == "fit" else self.evaluation_peak

    def largest_device_term(self) -> str:
        return max(self.device, key=self.device.__getitem__)


def plan_memory(shape: ModelShape, setup: RunSetup) -> Plan:
    """The :class:`Plan` of ``setup`` for a model of ``shape``."""
    s, plan = setup, Plan(shape, setup)
    shards = s.shards
    trainable = shape.lora_parameters(s.lora) if s.lora else shape.parameters
    if s.load_in_4bit:  # NF4 with double quantization: ~0.53 bytes a projection weight; the rest in bf16
        weights = shape.linear_parameters * 0.53 + (shape.parameters - shape.linear_parameters) * 2
    else:
        weights = shape.parameters * s.param_bytes
    adapters = trainable * 4 if s.lora else 0.0  # LoRA weights in float32
    grad_bytes = 4 if s.lora else s.param_bytes
    state_bytes, paged = optimizer_state(s.optimizer, 4 if s.lora else s.param_bytes)
    on_host = s.cpu_offload
    d = plan.device
    fit = s.stage == "fit"
    d["weights"] = 0.0 if on_host else (weights + adapters) / shards
    if fit:  # evaluation alone (test, predict) holds no gradients or optimizer states
        d["gradients"] = 0.0 if on_host else trainable * grad_bytes / shards
        d["optimizer states"] = 0.0 if (on_host or paged) else trainable * state_bytes / shards
    if s.sharding in ("fsdp1", "fsdp2"):  # the root unit stays gathered; two layers (one prefetched); one unit's grad
        unit = max(shape.layer_parameters, shape.root_parameters)
        d["all-gathered units"] = (2 * shape.layer_parameters + shape.root_parameters) * s.compute_bytes
        if fit:
            d["unsharded unit gradient"] = unit * (s.compute_bytes + 4)
    tokens = s.batch * s.max_length
    working = tokens * (8 * shape.hidden + 2 * shape.kv_width + 4 * shape.intermediate) * s.compute_bytes
    inputs = (
        shape.layers * tokens * shape.hidden * s.compute_bytes if s.activation_checkpointing else shape.layers * working
    )
    logits = s.batch * min(s.loss_positions, s.max_length) * shape.vocab * 4 * 3  # fp32 logits, log-softmax, grad
    if fit:
        d["checkpointed activations" if s.activation_checkpointing else "activations"] = inputs
        d["loss logits"] = logits
        d["layer working set"] = working
    kv = s.eval_tokens * shape.layers * 2 * shape.kv_width * s.compute_bytes
    prefill = s.eval_tokens * (4 * shape.hidden + 2 * shape.kv_width + 3 * shape.intermediate) * s.compute_bytes
    d["evaluation KV cache"] = kv
    d["evaluation prefill"] = prefill + s.eval_rows * shape.vocab * 4
    gathered = d.get("all-gathered units", 0.0)
    resident = d["weights"] + gathered
    states = d.get("optimizer states", 0.0)
    if fit:
        backward = max(d["gradients"], inputs + logits) + working
        plan.training_peak = resident + states + d.get("unsharded unit gradient", 0.0) + backward
    plan.evaluation_peak = resident + states + kv + d["evaluation prefill"]  # within fit the states stay
    if paged:
        plan.notes.append(
            "optimizer states paged (CUDA unified memory): outside the device peak, evicted to the host under pressure"
        )
    # Host, per node: rank 0 alone reads the weights under FSDP (node 0); every process its own copy otherwise.
    h = plan.host
    readers = 1 if s.sharding in ("fsdp1", "fsdp2") else s.devices
    h["loading"] = readers * (weights + adapters)
    per_rank = (weights + adapters) / shards + trainable * (grad_bytes + state_bytes) / shards
    if not fit:
        per_rank = (weights + adapters) / shards
    h["offload"] = s.devices * per_rank if on_host else 0.0
    h["paged optimizer states"] = s.devices * trainable * state_bytes / shards if paged and fit else 0.0
    h["test after fit"] = h["loading"] if fit else 0.0  # the fit's model and optimizer freed first
    plan.host_peak = max(h["loading"], h["offload"] + h["paged optimizer states"], h["test after fit"])
    return plan


__all__ = ["GiB", "Plan", "RunSetup", "optimizer_state", "plan_memory"]
