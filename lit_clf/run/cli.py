"""The ``lit-clf`` command: LightningCLI with ``fit``, ``validate``, ``test`` and ``predict``.

Argument links and defaults derived from the tasks live here, so no config states them: the task specs (names,
kinds, label lists) flow from the DataModule to the model; the checkpoint kept is the best on the first task's
main validation metric (:class:`~lit_clf.run.callbacks.BestCheckpoint`); loggers left unnamed are named after the
run (:func:`~lit_clf.run.tracking.name_loggers`).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import Namespace
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_warn

from lit_clf.checkpoints import FolderCheckpointIO, check_label_sets, has_optimizer_state, read_checkpoint
from lit_clf.compat import CLIHooks
from lit_clf.data.base import ClassificationDataModule
from lit_clf.data.download import DataNotFoundError
from lit_clf.data.tasks import TaskSpec
from lit_clf.planning.cli import add_plan_arguments, check_before_fit
from lit_clf.run.callbacks import BestCheckpoint, PredictionWriter, ShowTrainingExamples
from lit_clf.run.cost import RunCost
from lit_clf.run.progress import LogProgress
from lit_clf.run.provenance import RunSoftware
from lit_clf.run.resume import MetricsHistory, find_last_checkpoint, keep_metrics_history
from lit_clf.run.tracking import LitClfSaveConfigCallback, ThroughputLogger, WandbPredictionTable, name_loggers
from lit_clf.trust import (
    ALLOW_OPTION,
    allowed_on_command_line,
    check_config,
    check_hparams,
    enforced,
    refusal_from_parser_message,
    resolve,
)


class LitClfArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose refusal of an untrusted class path (:func:`lit_clf.trust.enforced`) is one
    line, ``lit-clf: error: <key>: class path '<path>' is not trusted ...``, exit 2, instead of a usage dump."""

    def error(self, message: str, ex: Exception | None = None):
        refusal = refusal_from_parser_message(message)
        if refusal is None or not self.exit_on_error or os.environ.get("LIT_CLF_TRACEBACK"):
            return super().error(message, ex)
        print(f"lit-clf: error: {refusal}", file=sys.stderr)
        raise SystemExit(2)


class LitClfCLI(CLIHooks):
    """LightningCLI with the data -> model links and the task-derived defaults every lit_clf config relies on;
    every class path it instantiates is one :mod:`lit_clf.trust` trusts or ``allowed_class_paths`` names."""

    def __init__(self, *args: Any, allowed_class_paths: list[str] | tuple[str, ...] = (), **kwargs: Any) -> None:
        self.allowed_class_paths = tuple(allowed_class_paths)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data", "model.init_args.tasks", compute_fn=self._task_dicts, apply_on="instantiate")
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ShowTrainingExamples, "show_examples")
        parser.add_lightning_class_args(ThroughputLogger, "throughput")
        parser.add_lightning_class_args(LogProgress, "progress")
        parser.add_lightning_class_args(RunCost, "cost")
        parser.add_lightning_class_args(RunSoftware, "software")
        parser.add_lightning_class_args(WandbPredictionTable, "wandb_table")
        parser.add_argument(
            ALLOW_OPTION,
            type=str | None,
            default=None,
            help="Class paths (or packages) of your own that configs and checkpoints may name, comma-separated, "
            "e.g. my_pkg.MyCallback,my_pkg.models: read from the command line only (a config file or checkpoint "
            "cannot allow code). lit_clf trusts its own model, data and callback classes, torch/bitsandbytes/"
            "torchao optimizers and schedulers, Lightning callbacks, loggers, strategies and plugins, and "
            "transformers/torch module classes; anything else is refused (README: Safety).",
        )
        add_plan_arguments(parser)
        parser.add_argument(
            "--overwrite_run",
            type=bool,
            default=False,
            help="Let this run write over the config.yaml and metrics.csv a previous run left in its log folder "
            "(refused otherwise; runs logged with a CSVLogger get a new version folder each and never clash).",
        )
        parser.add_argument(
            "--float32_matmul_precision",
            type=Literal["highest", "high", "medium"] | None,
            default="high",
            help="torch.set_float32_matmul_precision on a CUDA GPU: 'high' lets float32 matrix products use "
            "TensorFloat-32 tensor cores (what Lightning advises and litgpt does), 'highest' keeps full float32; "
            "null leaves torch's setting. Not applied without CUDA.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, run `test` with the best checkpoint (the final weights if none was kept).",
        )

    _checkpoint_tasks: list[TaskSpec] | None = None
    _checkpoint_callbacks: dict[str, Any] | None = None

    def apply_ckpt_path(self) -> None:
        """The model options stored in ``--ckpt_path``'s checkpoint fill the config (LightningCLI's behaviour), with
        three differences: options that only affect evaluation (the model class's ``evaluation_options``:
        decoding, ``max_new_tokens``, ``top_k``, ...) keep the values the config or command line gives; a
        checkpoint of another model class, or one that cannot be read, is a one-line error; and the checkpoint's
        task specs (label sets and order) are the model's, checked against the data's when it is built.
        ``last`` is resolved once the run is named (:meth:`before_instantiate_classes`)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in _CKPT_KEYWORDS:
            with _one_line_errors():
                self._apply_checkpoint(subcommand, ckpt_path)

    def _apply_checkpoint(self, subcommand: str, ckpt_path: str) -> None:
        checkpoint = read_checkpoint(ckpt_path)
        if subcommand == "fit" and not has_optimizer_state(ckpt_path, checkpoint):
            raise ValueError(
                f"ckpt_path: {ckpt_path} holds the weights only (saved with save_weights_only): a fit cannot resume "
                "from it; test it with `lit-clf test --ckpt_path`, or fit afresh without --ckpt_path"
            )
        check_hparams(checkpoint.get("hyper_parameters") or {}, self.allowed_class_paths, f"ckpt_path: {ckpt_path}: ")
        self._checkpoint_callbacks = dict(checkpoint.get("callbacks") or {})  # the metrics history, for a resumed fit
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        given = self.config[subcommand].get("model")
        trained_class = hparams.pop("_class_path", None)
        if trained_class and given is not None and given.get("class_path"):
            if _import(trained_class) is not _import(given.class_path):
                raise ValueError(
                    f"ckpt_path: {ckpt_path} holds a {trained_class} but the config's model is a "
                    f"{given.class_path}; give the config the checkpoint was trained with"
                )
        if hparams.get("tasks"):
            self._checkpoint_tasks = [TaskSpec.coerce(task) for task in hparams["tasks"]]
        if not hparams:
            return
        class_path = trained_class or (given.get("class_path") if given is not None else None)
        model_class = _import(class_path) if class_path else None
        keep = {}
        if given is not None and model_class is not None:
            keep = {name: given.init_args.get(name) for name in getattr(model_class, "evaluation_options", ())}
            mine = given.get("init_args") or {}
            moved = mine.get("backbone")
            if moved and moved != hparams.get("backbone") and Path(str(moved)).is_dir():
                keep["backbone"] = moved  # the checkpoint's model folder, moved: the config's path reaches it
            replaced = [
                f"{name} ({_shown(value)}, not {_shown(mine.get(name))})"
                for name, value in hparams.items()
                if name not in keep and name != "tasks" and name in mine and _plain(mine.get(name)) != _plain(value)
            ]
            if replaced:
                rank_zero_warn(
                    f"ckpt_path: the checkpoint's values replace the config's for {', '.join(replaced)}: only "
                    f"evaluation options ({', '.join(keep) or 'none'}) keep the config's"
                )
        section = {"class_path": class_path, "init_args": hparams} if class_path else hparams
        self.config = self.parser.parse_object({subcommand: {"model": section}}, self.config)
        for name, value in keep.items():
            self.config[subcommand].model.init_args[name] = value

    def _task_dicts(self, data: ClassificationDataModule) -> list[dict]:
        """The model's task specs: the data's, or the checkpoint's (``--ckpt_path``) once checked against them."""
        if self._checkpoint_tasks is None:
            return specs_to_dicts(data.task_specs)
        where = f"ckpt_path: {self.config[self.config.subcommand].ckpt_path}"
        check_label_sets(self._checkpoint_tasks, data.task_specs, where)
        return specs_to_dicts(self._checkpoint_tasks)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        precision = config.get("float32_matmul_precision")
        if precision and torch.cuda.is_available():
            torch.set_float32_matmul_precision(precision)
        name_loggers(config, self.subcommand)
        if config.get("ckpt_path") == "last":
            # The newest last.ckpt of the run this config names; fit resumes into that run's log folder.
            with _one_line_errors():
                path, version = find_last_checkpoint(config)
                config.ckpt_path = str(path)
                if self.subcommand == "fit" and version is not None:
                    _set_logger_version(config, version)
                self._apply_checkpoint(self.subcommand, str(path))
        with _one_line_errors():
            check_config(config, self.allowed_class_paths)
            if config.get("weights_only") is False:
                raise ValueError(
                    "weights_only: false would let a checkpoint's pickled objects run code; lit_clf loads "
                    "checkpoints with weights_only=True only (README: Safety)"
                )

    def before_fit(self) -> None:
        check_before_fit(self.config["fit"])  # exit status 3 with the plan's line when the run cannot fit
        resumed = self._checkpoint_callbacks is not None  # from a checkpoint file (read in _apply_checkpoint)
        if resumed:
            keep_metrics_history(self.trainer, self._checkpoint_callbacks)
        if not resumed or not self._resumes_this_run():
            self._refuse_overwrite()  # a fit from another run's checkpoint is a new run in its own folder

    def _resumes_this_run(self) -> bool:
        """Whether ``--ckpt_path`` lies in this run's folder (so the fit continues the run that wrote it)."""
        ckpt = Path(str(self.config["fit"].get("ckpt_path"))).resolve()
        folders = [Path(self.trainer.log_dir or self.trainer.default_root_dir)]
        callback = self.trainer.checkpoint_callback
        if getattr(callback, "dirpath", None):
            folders.append(Path(callback.dirpath))
        return any(folder.resolve() in ckpt.parents for folder in folders)

    def before_validate(self) -> None:
        self._refuse_overwrite()

    def before_test(self) -> None:
        self._refuse_overwrite()

    def before_predict(self) -> None:
        self._refuse_overwrite()

    def _refuse_overwrite(self) -> None:
        """A new run never writes over a previous run (a reused logger version, ``--trainer.logger false`` twice in
        one folder): a one-line error before anything is written. A previous run is a ``metrics.csv`` with rows
        or a checkpoint; a ``config.yaml`` alone is what a run that failed in setup left, and is replaced.
        ``--overwrite_run true`` replaces the run and moves its checkpoints aside, so ``checkpoints/best.ckpt``
        is always this run's."""
        if self.trainer.global_rank != 0:  # the other ranks start once rank 0 has begun writing the run
            return
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        checkpoints = folder / "checkpoints"
        kept = sorted(p.name for p in checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
        taken = [name for name in ("config.yaml", "metrics.csv") if (folder / name).is_file()]
        ran = _has_rows(folder / "metrics.csv") or bool(kept)
        if not ran:
            return
        if not self.config[self.subcommand].get("overwrite_run"):
            with _one_line_errors():
                raise ValueError(
                    f"{folder}: holds a previous run ({', '.join(taken + [f'checkpoints/{k}' for k in kept][:3])}); "
                    "give this run another folder (--trainer.default_root_dir, --trainer.logger.init_args.version), "
                    "resume that run with --ckpt_path last, or replace it with --overwrite_run true"
                )
        if kept and self.subcommand == "fit":  # the replaced run's checkpoints, aside (not deleted)
            aside = folder / f"checkpoints.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
            checkpoints.rename(aside)
            rank_zero_warn(f"--overwrite_run: the replaced run's checkpoints were moved to {aside}")

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """LightningCLI's, less the ``checkpoint`` callback where Lightning would add no default checkpoint
        either: checkpointing switched off, or a checkpoint callback of the config's own in ``trainer.callbacks``."""
        trainer = {**self.config_value(self.config_init, "trainer", default={}), **kwargs}
        listed = trainer.get("callbacks") or []
        listed = listed if isinstance(listed, list) else [listed]
        keep = trainer.get("enable_checkpointing") is not False and not any(isinstance(c, Checkpoint) for c in listed)
        keys = [key for key in self.callback_keys(self.subcommand) if keep or key != "checkpoint"]
        callbacks = [self.config_value(self.config_init, key) for key in keys]
        progress = next((c for c in callbacks if isinstance(c, LogProgress)), None)
        if progress is not None:
            if trainer.get("enable_progress_bar") is False:  # asked for no progress display at all
                progress.when = "never"
            elif progress.active():  # a log, not a terminal: plain lines instead of a bar that draws at the end
                trainer["enable_progress_bar"] = False
        built = self.build_trainer(trainer, [*callbacks, MetricsHistory()])
        strategy = built.strategy
        sharded = isinstance(strategy, (FSDPStrategy, ModelParallelStrategy))
        if not sharded and type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = FolderCheckpointIO()  # one device reads a sharded checkpoint folder whole
        return built

    def instantiate_classes(self) -> None:
        # Bad data or options surface here (the data are read to link the task specs): one line, exit 2.
        with _one_line_errors():
            super().instantiate_classes()

    def run_subcommand(self, subcommand: str) -> None:
        # Errors found once the run starts (a prompt longer than max_length, a few-shot pool too small, an output
        # file that exists): the same one line. LIT_CLF_TRACEBACK=1 shows the traceback.
        with _one_line_errors(hint=True):
            super().run_subcommand(subcommand)

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit"):
            return
        callback = self.trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        # The test needs no optimizer: its states (twice the fp32 weights with AdamW) go before it starts.
        self.trainer.strategy.optimizers = []
        gc.collect()
        if not isinstance(self.trainer.strategy, FSDPStrategy):
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)
            return
        # Lightning cannot test a module it has already wrapped with FSDP: the parameters outside the wrapped
        # layers (embeddings, final norm, head) stay views into the fit's root shards, and loading a checkpoint
        # fails on their sizes (Lightning-AI/pytorch-lightning#20373). Test a model built afresh from the same
        # config, with the checkpoint's weights: the best one, or the final weights saved for this.
        if not best:
            best = str(Path(self.trainer.log_dir or self.trainer.default_root_dir) / "checkpoints" / "final.ckpt")
            self.trainer.save_checkpoint(best, weights_only=True)
        # ... and the fit's sharded model before the fresh one is built: at 70B the two would not fit in host RAM.
        self.trainer.strategy.model = None
        for name in list(self.model._modules):
            delattr(self.model, name)
        gc.collect()
        fresh = self.parser.instantiate_classes(self.config)
        model, data = self.config_value(fresh, "model"), self.config_value(fresh, "data")
        self.trainer.test(model, datamodule=data, ckpt_path=best)


def _plain(value: Any) -> str:
    """A comparable text of an option value (Namespaces and dicts alike)."""
    return json.dumps(value, sort_keys=True, default=lambda v: v.as_dict() if hasattr(v, "as_dict") else str(v))


def _shown(value: Any) -> str:
    text = _plain(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _has_rows(path: Path) -> bool:
    """Whether a ``metrics.csv`` holds a row beyond its header."""
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as file:
        lines = (line for line in file if line.strip())
        return next(lines, None) is not None and next(lines, None) is not None


@contextmanager
def _one_line_errors(hint: bool = False):
    """Bad data or options (``ValueError``, missing data) -> ``lit-clf: error: <message>`` on stderr, exit 2."""
    try:
        yield
    except (DataNotFoundError, ValueError) as err:
        if os.environ.get("LIT_CLF_TRACEBACK"):
            raise
        more = " (LIT_CLF_TRACEBACK=1 shows where)" if hint else ""
        print(f"lit-clf: error: {_root_cause(err)}{more}", file=sys.stderr)
        raise SystemExit(2) from None


def _root_cause(err: BaseException) -> BaseException:
    """The error lit_clf raised, without jsonargparse's wrappers around errors raised inside argument links.

    Only wrappers are unwrapped: a lit_clf error raised ``from`` a lower-level one (a reader's
    ``en-US.jsonl:11: malformed JSON`` over a ``JSONDecodeError``) is reported itself, not its cause."""
    while _is_wrapper(err) and (inner := err.__cause__ or err.__context__) is not None:
        err = inner
    return err


#: How jsonargparse's messages start when it wraps an error raised while instantiating a class or running a link.
_WRAPPERS = ("Call to compute_fn of link", "Does not validate against any of the Union subtypes", "Problem with given")


def _is_wrapper(err: BaseException) -> bool:
    return type(err).__module__.startswith("jsonargparse") or str(err).startswith(_WRAPPERS)


#: ``ckpt_path`` values Lightning resolves itself rather than reading a file.
_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


def _set_logger_version(config: Namespace, version: int) -> None:
    """Log a resumed run into its earlier version folder (every CSV / TensorBoard logger of the config)."""
    logger = config.get("trainer.logger")
    for lg in logger if isinstance(logger, list) else [logger]:
        if isinstance(lg, Namespace) and "version" in (lg.get("init_args") or {}):
            lg.init_args.version = version


def _import(class_path: str) -> Any:
    try:
        return resolve(class_path)
    except (ImportError, AttributeError):
        raise ValueError(f"model class {class_path!r} cannot be imported") from None


def cli_options(allowed: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The ``LitClfCLI`` arguments of ``lit-clf`` (and of ``lit-clf plan``, which parses the same way)."""
    return dict(
        allowed_class_paths=allowed,
        parser_class=LitClfArgumentParser,
        model_class=None,
        datamodule_class=ClassificationDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LitClfSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``lit-clf`` and ``python -m lit_clf``: ``fit``, ``validate``, ``test``, ``predict`` (Lightning's
    subcommands), ``plan`` (the memory plan of a ``fit`` config, :mod:`lit_clf.planning.cli`) and ``export`` (a
    checkpoint as a Hugging Face folder, :mod:`lit_clf.export.cli`)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from DataLoader workers
    argv = sys.argv[1:] if args is None else list(args)
    with _one_line_errors():
        allowed = allowed_on_command_line(argv)
    with enforced(allowed):
        if argv[:1] == ["export"]:
            from lit_clf.export.cli import export_main

            with _one_line_errors():
                export_main(argv[1:])
            return
        if argv[:1] == ["plan"]:
            from lit_clf.planning.cli import plan_main

            with _one_line_errors():
                plan_main(argv[1:], cli_options(allowed))
            return
        LitClfCLI(args=args, **cli_options(allowed))


def specs_to_dicts(specs: Sequence[TaskSpec]) -> list[dict[str, Any]]:
    """Link function data -> model: plain dicts keep checkpoints loadable with ``weights_only=True``."""
    return [spec.to_dict() for spec in specs]
