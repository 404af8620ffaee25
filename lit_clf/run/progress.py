"""Progress as plain lines, for logs: when stdout is not a terminal (SLURM, ``nohup ... &``, a pipe), Lightning's
progress bar draws nothing until the end, so a multi-day fit logs nothing. :class:`LogProgress` prints a line every
``every_n_steps`` steps or ``every_seconds`` seconds, whichever comes first, for fit, validate, test and predict:

    fit: step 1,200/4,000 (30%) | loss 0.4123 | 7.9 examples/s | 3,912 tokens/s | ETA 2:41:10
    test: batch 12/372 (3%) | 3.1 examples/s | ETA 0:31:02
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only


class LogProgress(Callback):
    """Plain progress lines on stdout (rank 0), where a progress bar cannot draw."""

    def __init__(
        self, every_n_steps: int = 50, every_seconds: float = 60.0, when: Literal["auto", "always", "never"] = "auto"
    ) -> None:
        """
        Args:
            every_n_steps: A line every this many training steps (evaluation: batches).
            every_seconds: ... or every this many seconds, whichever comes first.
            when: ``auto``: when stdout is not a terminal (the progress bar is then switched off); ``always``;
                ``never``.
        """
        if every_n_steps < 1 or every_seconds <= 0:
            raise ValueError("progress: every_n_steps must be >= 1 and every_seconds > 0")
        self.every_n_steps, self.every_seconds, self.when = every_n_steps, every_seconds, when
        self._start = self._last = 0.0
        self._examples = self._tokens = 0

    def active(self) -> bool:
        """Whether it prints: ``always``, or ``auto`` with stdout not a terminal."""
        return self.when == "always" or (self.when == "auto" and not sys.stdout.isatty())

    # ------------------------------------------------------------------ training
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        self._count(batch)
        step = trainer.global_step
        if self._due(step):
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
            total = total or int(trainer.estimated_stepping_batches)
            loss = trainer.callback_metrics.get("train/loss")
            parts = [f"fit: step {step:,}/{total:,} ({100 * step // max(total, 1)}%)"]
            if loss is not None:
                parts.append(f"loss {float(loss):.4f}")
            parts += self._rates(done=step, total=total)
            self._print(" | ".join(parts))

    # ---------------------------------------------------------------- evaluation
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._begin_eval()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin_eval()

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin_eval()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._eval_line("val", trainer.num_val_batches, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_line("test", trainer.num_test_batches, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_line("predict", trainer.num_predict_batches, batch, batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._end("val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end("test")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end("predict")

    # ------------------------------------------------------------------- helpers
    def _begin(self) -> None:
        self._start = self._last = time.perf_counter()
        self._examples = self._tokens = 0

    _paused: tuple[float, float, int, int, float] | None = None

    def _begin_eval(self) -> None:
        # a validation inside a fit: the fit's counters are kept and its clock paused meanwhile
        self._paused = (self._start, self._last, self._examples, self._tokens, time.perf_counter())
        self._begin()

    def _end(self, stage: str) -> None:
        elapsed = time.perf_counter() - self._start
        self._print(f"{stage}: done, {self._examples:,} examples in {timedelta(seconds=round(elapsed))}")
        if self._paused is not None:
            start, last, examples, tokens, began = self._paused
            pause = time.perf_counter() - began
            self._start, self._last, self._examples, self._tokens = start + pause, last + pause, examples, tokens
            self._paused = None

    def _eval_line(self, stage: str, totals: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self._count(batch)
        done = batch_idx + 1
        if self._due(done):
            total = totals[dataloader_idx] if isinstance(totals, list) else totals
            total = int(total) if total not in (None, float("inf")) else None
            head = f"{stage}: batch {done:,}" + (f"/{total:,} ({100 * done // max(total, 1)}%)" if total else "")
            self._print(" | ".join([head, *self._rates(done=done, total=total)]))

    def _due(self, done: int) -> bool:
        now = time.perf_counter()
        if done % self.every_n_steps == 0 or now - self._last >= self.every_seconds:
            self._last = now
            return True
        return False

    def _count(self, batch: Any) -> None:
        if not isinstance(batch, dict):
            return
        rows = batch.get("rows", batch.get("index"))
        self._examples += int(rows) if isinstance(rows, int) else len(rows) if rows is not None else 0
        mask = batch.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() <= 2:  # a packed batch's 4D mask holds no counts
            self._tokens += int(mask.sum())

    def _rates(self, done: int, total: int | None) -> list[str]:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        parts = [f"{self._examples / elapsed:.1f} examples/s"]
        if self._tokens:
            parts.append(f"{self._tokens / elapsed:,.0f} tokens/s")
        if total and done:
            parts.append(f"ETA {timedelta(seconds=round(elapsed / done * max(total - done, 0)))}")
        return parts

    @rank_zero_only
    def _print(self, line: str) -> None:
        if self.active():
            print(line, flush=True)
