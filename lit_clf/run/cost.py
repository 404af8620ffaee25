"""What a run cost: wall time, device, device-hours and, on NVIDIA GPUs, energy (:class:`RunCost`)."""

from __future__ import annotations

import platform
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn


class RunCost(Callback):
    """Logs the cost of each stage that completes (``fit``, ``validate``, ``test``, ``predict``), from the
    trainer's setup to the stage's end (data preparation, evaluation and checkpointing included):

    - ``cost/<stage>_wall_s``: wall seconds;
    - ``cost/fit_train_s``: the seconds of fit spent in the training loop (from its first batch's setup to its
      end, the validation passes inside fit left out): what ``train_runtime`` is in a Hugging Face ``Trainer``;
    - ``cost/<stage>_device_hours``: wall hours x devices (GPUs across all nodes, or 1 for a CPU run);
    - ``cost/<stage>_energy_kwh``: energy the GPUs drew, summed over devices (NVML's counter; needs
      ``nvidia-ml-py`` and a Volta or newer GPU; left out otherwise).

    The device (``cost/device``, e.g. ``1x NVIDIA H100 80GB HBM3`` or ``CPU x86_64, 2 threads``) is logged as a
    hyperparameter: ``hparams.yaml`` of a CSV log, the run config in W&B. The Table 3 report shows them beside
    the scores."""

    def __init__(self, enabled: bool = True) -> None:
        """
        Args:
            enabled: Log the cost metrics.
        """
        self.enabled = enabled
        self._start: dict[str, float] = {}
        self._energy: dict[str, float | None] = {}
        self._train_start: float | None = None
        self._validation_start: float | None = None
        self._validation_s = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.enabled:
            return
        # The module moves to its device after this hook: the strategy already knows the device.
        device = trainer.strategy.root_device
        self._start[stage] = time.perf_counter()
        self._energy[stage] = _energy_mj(device)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_hyperparams({"cost/device": device_name(trainer, device)})

    def on_fit_end(self, trainer, pl_module) -> None:
        self._log(trainer, "fit")

    def on_train_start(self, trainer, pl_module) -> None:
        self._train_start, self._validation_s = time.perf_counter(), 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._train_start is not None and not trainer.sanity_checking:
            self._validation_start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.enabled or self._train_start is None:
            return
        seconds = time.perf_counter() - self._train_start - self._validation_s
        self._train_start = None
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"cost/fit_train_s": seconds}, step=trainer.global_step)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._validation_start is not None:  # a validation pass inside fit: not training time
            self._validation_s += time.perf_counter() - self._validation_start
            self._validation_start = None
        if trainer.state.fn == "validate":  # not the validation loops inside fit
            self._log(trainer, "validate")

    def on_test_end(self, trainer, pl_module) -> None:
        self._log(trainer, "test")

    def on_predict_end(self, trainer, pl_module) -> None:
        self._log(trainer, "predict")

    def _log(self, trainer: L.Trainer, stage: str) -> None:
        if not self.enabled or stage not in self._start:
            return
        seconds = time.perf_counter() - self._start.pop(stage)
        device = trainer.strategy.root_device
        devices = trainer.world_size if device.type != "cpu" else trainer.num_nodes
        metrics = {f"cost/{stage}_wall_s": seconds, f"cost/{stage}_device_hours": seconds / 3600 * devices}
        start, end = self._energy.pop(stage, None), _energy_mj(device)
        used = torch.tensor(end - start if start is not None and end is not None else float("nan"))
        used = trainer.strategy.reduce(used.to(device), reduce_op="sum")  # every rank: a collective
        if torch.isfinite(used):
            metrics[f"cost/{stage}_energy_kwh"] = float(used) / 3.6e9  # mJ -> kWh
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
                logger.save()


def device_name(trainer: L.Trainer, device: torch.device) -> str:
    """``<devices>x <GPU name>`` for a CUDA run; the CPU's architecture and torch's thread count otherwise."""
    if device.type == "cuda":
        return f"{trainer.world_size}x {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return f"{trainer.world_size}x {device.type}"
    nodes = f"{trainer.num_nodes}x " if trainer.num_nodes > 1 else ""
    return f"{nodes}CPU {platform.machine() or 'unknown'}, {torch.get_num_threads()} threads"


_warned = False


def _energy_mj(device: torch.device) -> float | None:
    """NVML's energy counter of ``device`` in millijoules; None off CUDA or where NVML cannot tell."""
    global _warned
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        bus_id = _pci_bus_id(device)
        handle = (
            pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
            if bus_id
            else pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        )
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception as err:  # no nvidia-ml-py, an old GPU or driver: the run goes on without energy
        if not _warned:
            rank_zero_warn(f"RunCost: no GPU energy reading ({type(err).__name__}: {err}); install nvidia-ml-py")
            _warned = True
        return None


def _pci_bus_id(device: torch.device) -> str | None:
    props: Any = torch.cuda.get_device_properties(device)
    if getattr(props, "pci_bus_id", None) is None:
        return None
    return f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
