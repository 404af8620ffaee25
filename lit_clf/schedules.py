"""Learning-rate schedules: linear warm-up to the optimizer's learning rate (the peak), then a decay.

The paper's Table 2 gives a "peak learning rate" (1e-6 for the decoders), which implies a warm-up and a decay it
does not state; lit_clf's configs keep it constant unless a schedule is composed in
(``configs/decoder/schedule/warmup-cosine.yaml``, ``configs/encoder/schedule/warmup-linear.yaml``).
"""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

Decay = Literal["linear", "cosine", "constant"]


class WarmupDecay(LambdaLR):
    """Linear warm-up from 0 to the optimizer's learning rate over ``warmup_steps`` optimizer steps, then a decay to
    ``min_lr_ratio`` of it at ``total_steps``: ``linear``, ``cosine`` (half a cosine) or ``constant`` (none).

    Args:
        optimizer: The optimizer; its learning rate is the peak.
        warmup_steps: Steps of linear warm-up (0: start at the peak).
        decay: ``linear``, ``cosine`` or ``constant``.
        total_steps: The step the decay ends at. Unset: the run's own number of optimizer steps (the Trainer's
            ``estimated_stepping_batches``, set by the module when it builds the optimizer).
        min_lr_ratio: The learning rate at ``total_steps``, as a fraction of the peak.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        decay: Decay = "cosine",
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"lr_scheduler: warmup_steps must be >= 0, got {warmup_steps}")
        if decay not in ("linear", "cosine", "constant"):
            raise ValueError(f"lr_scheduler: decay: expected linear, cosine or constant, got {decay!r}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"lr_scheduler: min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps, self.decay, self.total_steps, self.min_lr_ratio = (
            warmup_steps,
            decay,
            total_steps,
            min_lr_ratio,
        )
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """The learning rate at optimizer step ``step`` as a fraction of the peak."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.decay == "constant" or self.total_steps is None:
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        done = min(1.0, (step - self.warmup_steps) / span)
        shape = 1.0 - done if self.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape

    def state_dict(self) -> dict:
        """LambdaLR's, without the bound method (the schedule is rebuilt from its arguments)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)


__all__ = ["Decay", "WarmupDecay"]
