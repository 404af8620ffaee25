"""FSDP2: ``fully_shard`` per decoder layer for both families, through Lightning's ``ModelParallelStrategy``.

FSDP1 (``FSDPStrategy``, ``configs/trainer/fsdp-8xa100.yaml``) wraps the module after ``configure_model``; FSDP2
shards in it. :class:`FSDP2Strategy` is a ``ModelParallelStrategy`` that holds the sharding options, and its
:meth:`~FSDP2Strategy.parallelize` is what a module's ``configure_model`` calls once the model is built:

1. rank 0 has built the model with its weights on the CPU (one host copy for the node), every other rank on the
   ``meta`` device (no memory);
2. every decoder layer (the model's ``_no_split_modules``), the task heads and the backbone become FSDP2 units,
   each with ``MixedPrecisionPolicy(param = the run's half dtype, reduce = float32)``; activation checkpointing
   per layer;
3. the parameters are materialized on each rank's device and rank 0's weights are broadcast shard by shard
   (``set_model_state_dict(..., broadcast_from_rank0=True)``); buffers (the rotary ``inv_freq``, kept float32:
   FSDP2 never casts buffers) are broadcast from rank 0 too.

Checkpoints are distributed (a folder, one file per rank, resharded on load: save on 4 ranks, reload on 2), or
with ``save_distributed_checkpoint: false`` one file gathered on rank 0. ``lit-clf export`` turns either into a
Hugging Face folder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

#: Lightning precisions -> the dtype FSDP2 all-gathers the parameters in (the sharded master copy keeps its own).
_COMPUTE = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 (``fully_shard``) over every process, or hybrid sharding over several nodes.

    Args:
        hybrid: Shard within each node and replicate across nodes (HSDP: the all-gathers stay on the node's
            NVLink, only gradient reduction crosses nodes). ``false``: shard over every process of the job.
        activation_checkpointing: Recompute each decoder layer's activations in backward (keeps one layer input per
            layer: at 8,192 tokens 80 x 8,192 x 8,192 x 2 B = 10.7 GB for Llama-3-70B, instead of ~20x that).
        reshard_after_forward: Free each layer's gathered weights after its forward (ZeRO-3); ``false`` keeps them
            until backward (ZeRO-2: fewer all-gathers, the whole unsharded model in memory).
        cpu_offload: FSDP2's ``CPUOffloadPolicy``: parameters, gradients and optimizer step on the host.
        save_distributed_checkpoint: Each rank writes its shard (a folder; reloads on another number of ranks).
            ``false``: one file gathered on rank 0 (needs the whole model in rank 0's host memory).
        process_group_backend: ``nccl`` on GPUs, ``gloo`` on CPU; unset: Lightning's choice for the device.
        timeout: Collective timeout (rank 0 reading a 70B checkpoint while the others wait needs minutes).
    """

    def __init__(
        self,
        hybrid: bool = False,
        activation_checkpointing: bool = True,
        reshard_after_forward: bool = True,
        cpu_offload: bool = False,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        super().__init__(
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.hybrid = hybrid
        self.activation_checkpointing = activation_checkpointing
        self.reshard_after_forward = reshard_after_forward
        self.cpu_offload = cpu_offload

    def setup_environment(self) -> None:
        # Lightning's mesh is (data_parallel, tensor_parallel); sharding over all: (world, 1); hybrid: (nodes,
        # devices per node), replicated over the first dimension and sharded over the second.
        world = self.num_nodes * self.num_processes
        self._data_parallel_size, self._tensor_parallel_size = (
            (self.num_nodes, self.num_processes) if self.hybrid else (world, 1)
        )
        super().setup_environment()

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        return {"num_replicas": self.world_size, "rank": self.global_rank}  # every rank reads its own rows

    @property
    def shard_mesh(self):
        """The mesh ``fully_shard`` gets: 1-D over every rank, or 2-D (replicate, shard) for hybrid sharding."""
        return self.device_mesh if self.hybrid else self.device_mesh["data_parallel"]

    def mixed_precision(self):
        from torch.distributed.fsdp import MixedPrecisionPolicy

        compute = _COMPUTE.get(str(self.precision_plugin.precision))
        return MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)

    def parallelize(self, module: nn.Module, backbone: nn.Module, units: Sequence[nn.Module] = ()) -> None:
        """:func:`shard_module` with this strategy's mesh, rank, device and options."""
        from torch.distributed.fsdp import CPUOffloadPolicy

        if getattr(module, "hparams", {}).get("load_in_4bit"):
            raise ValueError(
                "model.init_args.load_in_4bit: QLoRA's 4-bit weights are not sharded by FSDP2Strategy (bitsandbytes "
                "4-bit parameters as DTensors are not supported here yet); run QLoRA on one GPU, or LoRA under FSDP2"
            )
        shard_module(
            module,
            backbone,
            units,
            mesh=self.shard_mesh,
            rank=self.global_rank,
            device=torch.device("cpu") if self.cpu_offload else self.root_device,
            mp_policy=self.mixed_precision(),
            activation_checkpointing=self.activation_checkpointing,
            reshard_after_forward=self.reshard_after_forward,
            offload_policy=CPUOffloadPolicy() if self.cpu_offload else None,
        )


def shard_module(
    module: nn.Module,
    backbone: nn.Module,
    units: Sequence[nn.Module] = (),
    *,
    mesh,
    rank: int,
    device: torch.device,
    mp_policy=None,
    activation_checkpointing: bool = False,
    reshard_after_forward: bool = True,
    offload_policy=None,
) -> None:
    """Shard ``module`` in place with FSDP2: each decoder layer of ``backbone``, each of ``units`` (the task heads)
    and the backbone become ``fully_shard`` units on ``mesh``; the parameters are materialized on ``device`` and
    filled with rank 0's (``backbone`` built with its weights on rank 0, on the meta device or with any values on
    the others). Buffers of the backbone and units (rotary ``inv_freq``: float32) are broadcast from rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import fully_shard

    rank0 = rank == 0
    model = hf_model(backbone)
    parts = [backbone, *units]  # what holds meta tensors on ranks > 0 (not the metrics: their states stay)
    full = dict(module.state_dict()) if rank0 else {}  # references: rank 0's one host copy
    buffers = [(name, b.detach().clone() if rank0 else None) for p in parts for name, b in p.named_buffers()]
    layers = decoder_layers(model)
    if activation_checkpointing:
        from lit_clf.loading import enable_activation_checkpointing  # (lit_clf.loading imports this module)

        enable_activation_checkpointing(model)
    options: dict[str, Any] = {"mesh": mesh, "mp_policy": mp_policy or _default_policy()}
    if offload_policy is not None:
        options["offload_policy"] = offload_policy
    for layer in layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **options)
    for unit in units:
        fully_shard(unit, **options)
    fully_shard(model, reshard_after_forward=reshard_after_forward, **options)
    unsharded = [name for name, p in module.named_parameters() if not _is_dtensor(p)]
    if unsharded:
        raise RuntimeError(
            "FSDP2: parameters outside every sharded unit (their gradients would not be reduced): "
            + ", ".join(unsharded[:5])
        )
    for part in parts:
        part.to_empty(device=device)
    set_model_state_dict(
        module, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True)
    )
    own = dict(b for p in parts for b in p.named_buffers())
    for name, value in buffers:
        if rank0:
            own[name].copy_(value)
        dist.broadcast(own[name], src=0)


def _default_policy():
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy()


def hf_model(backbone: nn.Module) -> nn.Module:
    """The transformers model whose ``forward`` ``generate`` calls: a PEFT model's base model, else ``backbone``."""
    return backbone.base_model.model if hasattr(backbone, "peft_config") else backbone


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks, as transformers names them (``_no_split_modules``: ``LlamaDecoderLayer``); of
    several names listed (BERT's embeddings and layer), the class with the most instances."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    found = [m for m in model.modules() if type(m).__name__ in names]
    counts = Counter(type(m).__name__ for m in found)
    layers = [m for m in found if counts and type(m).__name__ == counts.most_common(1)[0][0]]
    if not layers:
        raise ValueError(
            f"FSDP2: {type(model).__name__} names no repeated layer to shard (_no_split_modules: {sorted(names)})"
        )
    return layers


def _is_dtensor(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def is_fsdp2(trainer) -> bool:
    """Whether ``trainer`` runs :class:`FSDP2Strategy` (so a module's ``configure_model`` shards)."""
    return trainer is not None and isinstance(trainer.strategy, FSDP2Strategy)


__all__ = ["FSDP2Strategy", "decoder_layers", "hf_model", "is_fsdp2", "shard_module"]
