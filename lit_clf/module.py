"""What both model families share: task specs, metrics, the evaluation steps, optimizers, checkpoints, and the
notebook API (:meth:`TaskModule.predict_texts`).

A family module subclasses :class:`TaskModule`, calls :meth:`TaskModule.init_tasks` in its ``__init__`` (after
``save_hyperparameters``), sets ``self.featurizer`` and implements ``training_step``, ``_evaluate`` and
``predict_step``. In ``setup`` the module hands its featurizer to the DataModule: the one place where model and
data meet (data flows one way: the DataModule passes its examples and :class:`~lit_clf.data.base.DatasetInfo` to
the featurizer, never the other way round).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from lit_clf.checkpoints import (
    FINGERPRINT,
    check_fingerprint,
    check_finite,
    check_label_sets,
    read_checkpoint,
    weights_fingerprint,
)
from lit_clf.data.base import DatasetInfo, Featurizer
from lit_clf.data.tasks import Example, TaskSpec
from lit_clf.metrics import task_metrics
from lit_clf.precision import keep_rotary_float32
from lit_clf.schedules import WarmupDecay
from lit_clf.sharding import is_fsdp2
from lit_clf.trust import check_hparams, enforced

STAGES = ("val", "test")
_PLAIN = (str, int, float, bool, type(None))


def default_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW, lr 1e-5, fused (one kernel per step, no per-tensor temporaries) where torch has that for the
    parameters' device (CPU, CUDA); configs state the paper's optimizer and learning rate for each family, fused too."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=1e-5, fused=fused or None)


def is_plain(value: Any) -> bool:
    """True for values made only of str/int/float/bool/None, lists and string-keyed dicts."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def sanitize_checkpoint(checkpoint: dict[str, Any], tasks: Sequence[TaskSpec]) -> None:
    """Keep checkpoints loadable with ``torch.load(weights_only=True)`` and self-describing.

    Hyperparameters that are Python objects (an optimizer callable given in code rather than in a
    config) are dropped, and the task specs and ``id2label`` maps are stored beside the weights.
    """
    hparams = checkpoint.get("hyper_parameters")
    if hparams is not None:
        checkpoint["hyper_parameters"] = {k: v for k, v in dict(hparams).items() if is_plain(v)}
    checkpoint["task_specs"] = [task.to_dict() for task in tasks]
    checkpoint["id2label"] = {task.name: list(task.labels) for task in tasks}


def coerce_tasks(tasks: Sequence[TaskSpec | Mapping[str, Any]] | None, owner: str) -> list[TaskSpec]:
    """Task specs from the DataModule link (or a checkpoint); a clear error when they are missing."""
    if not tasks:
        raise ValueError(
            f"{owner}: `tasks` is empty. The CLI links it from the DataModule; in code pass "
            "`tasks=datamodule.task_specs`"
        )
    return [TaskSpec.coerce(task) for task in tasks]


def rng_states() -> dict[str, Any]:
    """The global random number states training draws from (torch CPU and CUDA, Python's ``random``), as tensors
    and plain data (``weights_only`` checkpoints)."""
    version, state, gauss = random.getstate()
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class TaskModule(L.LightningModule):
    """Base of both model families: task specs, per-stage metrics, validation/test steps around the family's
    ``_evaluate(batch, stage)``, optimizer and scheduler from the config, self-describing checkpoints."""

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args: Any, allowed_class_paths: Sequence[str] = (), **kwargs: Any):
        """Lightning's ``load_from_checkpoint``, once the checkpoint's class paths are ones lit_clf trusts
        (:mod:`lit_clf.trust`; ``allowed_class_paths``: your own) and with ``weights_only=True``: Lightning builds
        the optimizer and other classes a checkpoint of a LightningCLI run names, so an untrusted one is refused
        (``UntrustedCode``) before anything is imported or called."""
        if kwargs.setdefault("weights_only", True) is not True:
            raise ValueError("weights_only: lit_clf loads checkpoints with weights_only=True only (README: Safety)")
        checkpoint = read_checkpoint(checkpoint_path)
        check_hparams(checkpoint.get("hyper_parameters") or {}, allowed_class_paths, f"{checkpoint_path}: ")
        with enforced(allowed_class_paths):
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    tasks: list[TaskSpec]
    featurizer: Featurizer

    def init_tasks(self, tasks: Sequence[TaskSpec | Mapping[str, Any]] | None, optimizer, lr_scheduler) -> None:
        """Task specs (stored as plain data in the hyperparameters), metrics per stage, optimizer factories."""
        self.tasks = coerce_tasks(tasks, type(self).__name__)
        self.hparams["tasks"] = [task.to_dict() for task in self.tasks]  # plain data in checkpoints
        self.metrics = nn.ModuleDict(
            {stage: task_metrics(self.tasks, self.counts_invalid, self.gives_probabilities) for stage in STAGES}
        )
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler

    #: Whether predictions can be invalid (generated text): adds ``{stage}/{task}_invalid_rate``.
    counts_invalid = False
    #: Whether the family gives a probability per label of a sequence task: adds ``{stage}/{task}_ece`` and
    #: ``{stage}/{task}_brier`` (calibration).
    gives_probabilities = False
    #: Whether the family writes answers to prompts (its report rows have shots): the decoder and API families.
    #: The report reads it through :data:`lit_clf.report.identity.GENERATIVE`, without importing the class.
    generative = False
    #: Arguments that only change how the model is evaluated, never what it learns: ``lit-clf test/predict
    #: --ckpt_path`` takes them from the config and command line, every other argument from the checkpoint.
    evaluation_options: tuple[str, ...] = ()

    def setup(self, stage: str) -> None:
        """Check that the DataModule's label sets are ones this model can score, then hand it the featurizer
        (it featurizes its splits with it when loaders are asked for)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            specs = getattr(datamodule, "task_specs", None)
            if specs is not None:
                check_label_sets(self.tasks, specs, f"{type(self).__name__} vs {type(datamodule).__name__}")
            datamodule.featurizer = self.featurizer

    def prompt_shots(self, example: Example) -> list[Example]:
        """The labelled examples the model is shown with ``example`` (a few-shot decoder's prompt); none here."""
        return []

    # ------------------------------------------------------------------ steps
    def _evaluate(self, batch: dict[str, Any], stage: str) -> list[dict[str, Any]]:
        """Update the stage's metrics; return the batch's prediction rows for ``test``."""
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Updates the test metrics and returns the batch's prediction rows (for prediction tables)."""
        return self._evaluate(batch, "test")

    def log_metrics(self, stage: str, batch_size: int) -> None:
        """Log every metric of ``stage`` as ``{stage}/{task}_{metric}`` (the invalid rate off the progress bar)."""
        for task in self.tasks:
            for name, metric in self.metrics[stage][task.name].items():
                self.log(f"{stage}/{task.name}_{name}", metric, prog_bar=name != "invalid_rate", batch_size=batch_size)

    def to(self, *args: Any, **kwargs: Any):
        """``nn.Module.to``, rotary position buffers kept in float32 (:mod:`lit_clf.precision`): Lightning's
        ``bf16-true`` casts the whole module to bfloat16 this way."""
        return keep_rotary_float32(self, lambda module: super().to(*args, **kwargs))

    def half(self):
        return keep_rotary_float32(self, lambda module: super().half())

    def bfloat16(self):
        return keep_rotary_float32(self, lambda module: super().bfloat16())

    def load_options(self) -> dict[str, Any]:
        """The arguments of :func:`lit_clf.loading.load_model` that both families take from their hyperparameters,
        with the Trainer (its precision, device and FSDP rank); each family's ``configure_model`` passes them."""
        hp = self.hparams
        names = ("pretrained", "torch_dtype", "load_in_4bit", "lora", "gradient_checkpointing", "attn_implementation")
        return {name: hp[name] for name in names} | {"trainer": self._trainer}

    def place_built(self) -> None:
        """Direct use (no Trainer): weights just built in ``configure_model`` go to the device the module was moved
        to before (``module.to("cuda")`` moves nothing while there is nothing built, but Lightning records the
        device). A Trainer places the module itself; 4-bit weights are placed by bitsandbytes as they load. Under
        FSDP2 the module is sharded here (:meth:`lit_clf.sharding.FSDP2Strategy.parallelize`)."""
        if is_fsdp2(self._trainer):
            heads = getattr(self, "heads", None)
            self._trainer.strategy.parallelize(self, self.backbone, list(heads.values()) if heads is not None else [])
            return
        if self._trainer is None and not self.hparams.load_in_4bit and self.device != torch.device("cpu"):
            self.to(self.device)

    def built_backbone(self) -> nn.Module:
        """The transformers model. Both families build it in ``configure_model``, not in ``__init__`` (under FSDP
        on several devices only rank 0 reads the weights); a Trainer calls it, direct use calls it first."""
        if getattr(self, "backbone", None) is None:
            raise RuntimeError("the model is not built yet: call configure_model() (a Trainer does)")
        return self.backbone

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if isinstance(scheduler, WarmupDecay) and scheduler.total_steps is None and self._trainer is not None:
            scheduler.total_steps = int(self.trainer.estimated_stepping_batches)  # the run's optimizer steps
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping (``--trainer.gradient_clip_val``), and under FSDP by the total norm over every
        shard (FSDP's own ``clip_grad_norm_``: clipping each shard by its own norm would be wrong, and Lightning
        refuses to clip there at all)."""
        strategy = self._trainer.strategy if self._trainer is not None else None
        if gradient_clip_val and isinstance(strategy, FSDPStrategy):
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError("gradient_clip_algorithm: under FSDP only 'norm' clipping is supported")
            strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sanitize_checkpoint(checkpoint, self.tasks)
        fingerprint = weights_fingerprint(checkpoint.get("state_dict", {}))
        if fingerprint is not None:
            checkpoint[FINGERPRINT] = fingerprint
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse weights with NaN or infinite values (a damaged file loads without any other error); resuming
        training, continue the random number streams (dropout) where the checkpoint left them."""
        where = f"ckpt_path: {getattr(self._trainer, 'ckpt_path', None) or 'the checkpoint'}"
        check_finite(checkpoint.get("state_dict", {}), where)
        check_fingerprint(checkpoint.get("state_dict", {}), checkpoint.get(FINGERPRINT), where)
        if self._trainer is not None and self._trainer.state.fn == "fit" and checkpoint.get("rng_states"):
            set_rng_states(checkpoint["rng_states"])

    # ---------------------------------------------------------- notebook API
    @torch.no_grad()
    def predict_texts(
        self, texts: Sequence[str], batch_size: int = 16, data: DatasetInfo | None = None
    ) -> list[dict[str, Any]]:
        """Predict labels for raw texts, without a Trainer: ``module.predict_texts(["wake me up at five"])``.

        Args:
            texts: Unlabelled inputs.
            batch_size: Texts per forward pass.
            data: The dataset's :class:`~lit_clf.data.base.DatasetInfo` (``datamodule.info``); needed only by
                few-shot decoder prompts (their examples come from its training split) and to pick the paper's
                prompt for the dataset. Unset: the last one the featurizer saw, if any.

        Returns:
            Per text, task name -> predicted label (a list of word labels for token tasks; None for an invalid
            generated answer).
        """
        self.configure_model()  # a family that builds its model lazily (the decoder) builds it now, once
        examples = [Example(id=f"text-{i}", text=text) for i, text in enumerate(texts)]
        features = self.featurizer.featurize(examples, train=False, info=data)
        was_training = self.training
        self.eval()
        rows: list[dict[str, Any]] = []
        try:
            for start in range(0, len(features), batch_size):
                batch = self.featurizer.collate(features[start : start + batch_size])
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                rows += self.predict_step(batch, start // batch_size)
        finally:
            self.train(was_training)
        rows.sort(key=lambda row: row["index"])
        return [{name: out["pred"] for name, out in row["tasks"].items()} for row in rows]
