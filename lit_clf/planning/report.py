"""A :class:`~lit_clf.planning.memory.Plan` as the lines ``lit-clf plan`` prints, and whether the run fits."""

from __future__ import annotations

from lit_clf.planning.memory import GiB, Plan


def _gib(value: float) -> str:
    return f"{value / GiB:,.1f} GiB"


def fits(plan: Plan, device_memory: float, host_memory: float | None = None) -> tuple[bool, str]:
    """Whether the run fits ``device_memory`` per device (and ``host_memory`` per node, when given; both GiB),
    and, when not, which term is the largest."""
    if plan.device_peak > device_memory * GiB:
        term = plan.largest_device_term()
        return False, f"does not fit: the largest term per device is {term} ({_gib(plan.device[term])})"
    if host_memory is not None and plan.host_peak > host_memory * GiB:
        term = max(plan.host, key=plan.host.__getitem__)
        return False, f"does not fit the host: the largest term per node is {term} ({_gib(plan.host[term])})"
    return True, ""


def last_line(plan: Plan, device_memory: float) -> str:
    return (
        f"peak per device: {plan.device_peak / GiB:,.1f} GiB of {device_memory:,.1f} GiB; host: {_gib(plan.host_peak)}"
    )


def plan_lines(plan: Plan, device_memory: float, host_memory: float | None = None) -> list[str]:
    """The plan, term by term, ending with the verdict (when it does not fit) and the ``peak per device`` line."""
    shape, s = plan.shape, plan.setup
    where = {"none": "one device", "ddp": "DDP (a whole copy per device)"}.get(s.sharding)
    if where is None:
        how = "hybrid: sharded within each node" if s.hybrid else "sharded over every device"
        where = f"{s.sharding.upper()}, {how} ({s.shards} ways)" + (", CPU offload" if s.cpu_offload else "")
    trainable = f"LoRA r={s.lora.get('r', 8)}" if s.lora else "every weight"
    lines = [
        f"model: {shape.name}: {shape.parameters / 1e9:,.2f} B parameters, {shape.layers} layers of "
        f"{shape.layer_parameters / 1e6:,.0f} M, window {shape.window or 'unstated'}",
        f"run: {s.nodes} node(s) x {s.devices} device(s), {where}; {s.param_bytes:g}-byte weights, "
        f"{s.compute_bytes:g}-byte compute; {s.optimizer}; training {trainable}"
        + ("; 4-bit base weights" if s.load_in_4bit else ""),
        f"batch: {s.batch} row(s) of {s.max_length:,} tokens per device, activation checkpointing "
        f"{'on' if s.activation_checkpointing else 'off'}; evaluation batch {s.eval_rows} row(s), "
        f"{s.eval_tokens:,} tokens",
        "per device:",
    ]
    lines += [f"  {term:<26} {_gib(value):>12}" for term, value in plan.device.items()]
    if s.stage == "fit":
        lines.append(f"  {'training peak':<26} {_gib(plan.training_peak):>12}")
    lines.append(f"  {'evaluation peak':<26} {_gib(plan.evaluation_peak):>12}")
    lines.append("per node (host):")
    lines += [f"  {term:<26} {_gib(value):>12}" for term, value in plan.host.items()]
    lines += [f"note: {note}" for note in plan.notes]
    ok, reason = fits(plan, device_memory, host_memory)
    if not ok:
        lines.append(reason)
    lines.append(last_line(plan, device_memory))
    return lines


__all__ = ["fits", "last_line", "plan_lines"]
