"""A finished run as the report sees it (:class:`Run`: its table row, tasks and test metrics), and the rules that
turn a resolved config and its metrics into that row (:func:`run_from_config`). The files runs are read from are
:mod:`lit_clf.report.readers`'."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_clf.report.identity import is_fine_tuned, is_generative
from lit_clf.report.paper import Row, display_name

__all__ = ["ReportError", "Run", "config_get", "model_id", "model_section", "run_from_config"]


class ReportError(Exception):
    """A problem the user can act on: the message names the file (and line) and what was expected."""


@dataclass(frozen=True)
class Run:
    """One finished run: where it came from, its row, its tasks and its final metrics.

    Attributes:
        source: The run folder, or ``<export.csv>, line <n> (<run name>)``.
        row: The table row the run belongs to.
        tasks: The run's tasks (``data.init_args.tasks``).
        metrics: Metric key -> last value, e.g. ``test/intent_acc`` -> 0.889 (fractions, as logged).
        time: When the run finished (seconds since the epoch): the newest run wins a cell.
        subset: ``data.init_args.max_eval_examples`` (else ``max_examples``) when set: the scores are on a subset
            of the test split. ``max_train_examples`` alone is a training budget, not a subset of the scores.
        config: The resolved LightningCLI config.
        device: What the run ran on (``cost/device``, logged by :class:`lit_clf.run.cost.RunCost`), if recorded.
    """

    source: str
    row: Row
    tasks: tuple[str, ...]
    metrics: Mapping[str, float]
    time: float = 0.0
    subset: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    device: str | None = None

    @property
    def cost(self) -> dict[str, float]:
        """``wall_s``, ``device_hours`` and ``energy_kwh`` summed over the run's stages (``cost/<stage>_*``). A test
        resumed from its answer log adds the seconds the answers it read back took to generate
        (``cost/test_read_back_s``), on as many devices as the resumed process had."""
        totals: dict[str, float] = {}
        for key, value in self.metrics.items():
            if key.startswith("cost/") and "_" in key:
                name = key.removeprefix("cost/").split("_", 1)[1]
                totals[name] = totals.get(name, 0.0) + value
        read_back = self.metrics.get("cost/test_read_back_s", 0.0)
        wall = self.metrics.get("cost/test_wall_s", 0.0)
        if read_back and wall:
            totals["wall_s"] = totals.get("wall_s", 0.0) + read_back
            devices = self.metrics.get("cost/test_device_hours", 0.0) * 3600 / wall
            totals["device_hours"] = totals.get("device_hours", 0.0) + read_back / 3600 * devices
        return totals


_MISSING = object()


def config_get(config: Any, dotted: str, default: Any = None) -> Any:
    """``config["model"]["init_args"]["shots"]`` for ``"model.init_args.shots"``, also where levels are
    flattened into dotted keys (``{"model.init_args.shots": 5}``, as W&B exports write them)."""
    if not isinstance(config, Mapping):
        return default
    if dotted in config:
        return config[dotted]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in config:
            found = config_get(config[head], ".".join(parts[i:]), _MISSING)
            if found is not _MISSING:
                return found
    return default


def _task_list(value: Any) -> tuple[str, ...]:
    """Tasks from a config value: a list, or its text as an export writes it (``["intent","slots"]``, ``[a b]``)."""
    if isinstance(value, str):
        value = re.split(r"[\s,'\"]+", value.strip().strip("[]"))
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(str(task) for task in value if str(task))


def _is_set(value: Any) -> bool:
    return value not in (None, "", "null", "None") and not (isinstance(value, float) and math.isnan(value))


def _fine_tuned(config: Mapping, metrics: Mapping[str, float]) -> bool:
    """:func:`~lit_clf.report.identity.is_fine_tuned`, "trained" read from the metrics: train/val metrics, or steps
    taken."""
    trained = any(key.startswith(("train/", "val/")) for key in metrics) or any(
        metrics.get(key, 0) > 0 for key in ("step", "trainer/global_step")
    )
    ckpt_path = config_get(config, "ckpt_path")
    return is_fine_tuned(ckpt_path if _is_set(ckpt_path) else None, trained)


#: The model arguments the report reads; ``backbone`` is the model's hub id or folder in both families.
_MODEL_ARGS = (
    "backbone",
    "shots",
    "decoding",
    "lora",
    "load_in_4bit",
    "pooling",
    "prompt_file",
    "loss_weighting",
    "structured_output",
)


def model_section(config: Mapping) -> dict[str, Any]:
    """The model's ``{"class_path": ..., "init_args": {...}}`` with the arguments the report reads (None where
    unset), from a resolved config in any form a run is read from (nested, or flattened by a W&B export)."""
    section = {
        "class_path": config_get(config, "model.class_path"),
        "init_args": {name: config_get(config, f"model.init_args.{name}") for name in _MODEL_ARGS},
    }
    return section


def model_id(config: Mapping) -> str | None:
    """The model's hub id or folder (``model.init_args.backbone``), or None if the config names none."""
    backbone = model_section(config)["init_args"]["backbone"]
    return str(backbone) if _is_set(backbone) else None


def _variant(init_args: Mapping, decoder: bool, train_subset: int | None = None, task_loss: bool = False) -> str:
    """Settings the paper did not use: a decoder's decoding other than free generation (an API model's structured
    output); a prompt file instead of
    the paper's prompt (the file's ``variant``, ``inline slot answer``, else its name:
    :func:`_prompt_variant`); heads reading another vector than
    the first token (a decoder backbone with heads: ``heads, last pooling``); LoRA / QLoRA; a consolidated decoder
    trained with ``loss_weighting: task`` (``task_loss``; for one task it equals the paper's loss); fine-tuning on
    ``train_subset`` examples of the training split (not comparable with a full-split run)."""
    parts = []
    decoding = init_args.get("decoding")
    if decoder and _is_set(decoding) and decoding != "free":
        parts.append(str(decoding))
    if decoder and init_args.get("structured_output") in (True, "true", "True"):  # API models: the server's JSON mode
        parts.append("structured output")
    prompt_file = init_args.get("prompt_file")
    if decoder and _is_set(prompt_file):
        parts.append(_prompt_variant(Path(str(prompt_file))))
    pooling = init_args.get("pooling")
    if not decoder and _is_set(pooling) and pooling not in ("auto", "first"):
        parts.append(f"heads, {pooling} pooling")
    if _is_set(init_args.get("lora")):
        parts.append("QLoRA" if init_args.get("load_in_4bit") in (True, "true", "True") else "LoRA")
    if task_loss:
        parts.append("task-weighted loss")
    if train_subset is not None:
        parts.append(f"{train_subset:,} train examples")
    return ", ".join(parts)


def _prompt_variant(path: Path) -> str:
    """The ``variant`` of the prompt file ``path`` (relative to the working directory, as the run had it; the
    template field of :class:`~lit_clf.prompting.templates.PromptTemplate`, read here without importing the decoder),
    else ``prompt <file name without suffix>``, also for a file that cannot be read: a report never fails on it."""
    fallback = f"prompt {path.stem}"
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return fallback
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return fallback
    variant = data.get("variant") if isinstance(data, Mapping) else None
    return variant.strip() if isinstance(variant, str) and variant.strip() else fallback


def _as_int(value: Any, what: str, where: str) -> int | None:
    if not _is_set(value):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise ReportError(f"{where}: {what} should be a number, got {value!r}") from None


_METRIC_SUFFIXES = ("_invalid_rate", "_exact_match", "_macro_f1", "_acc", "_f1")


def _tasks_of_metrics(metrics: Mapping[str, float]) -> tuple[str, ...]:
    """Task names in the order the scores name them (``test/ner_f1`` -> ``ner``): for a DataModule whose ``tasks``
    option was left unset (all of its tasks, e.g. WNUT 17's one)."""
    names: list[str] = []
    for key in metrics:
        stage, _, rest = key.partition("/")
        if stage in ("test", "val"):
            suffix = next((s for s in _METRIC_SUFFIXES if rest.endswith(s)), None)
            if suffix and rest[: -len(suffix)] not in names:
                names.append(rest[: -len(suffix)])
    return tuple(names)


def run_from_config(
    config: Mapping, metrics: Mapping[str, float], source: str, where: str, time: float, device: str | None = None
) -> Run:
    """Build a :class:`Run` from a resolved config and metrics; ``where`` names the config in errors."""
    tasks = _task_list(config_get(config, "data.init_args.tasks"))
    if not tasks and _is_set(config_get(config, "data.class_path")):  # a DataModule run with all of its tasks
        tasks = _tasks_of_metrics(metrics)
    if not tasks:
        raise ReportError(f"{where}: no data.init_args.tasks (expected a resolved lit-clf config)")
    model = model_section(config)
    args, class_path = model["init_args"], model["class_path"]
    # Decoder rows (with shots): the generative families, the decoder module and API chat models.
    decoder = is_generative(str(class_path) if _is_set(class_path) else None, args["shots"])
    if not _is_set(args["backbone"]):
        raise ReportError(f"{where}: no model.init_args.backbone (expected a resolved lit-clf config)")
    shots = (_as_int(args["shots"], "model.init_args.shots", where) or 0) if decoder else None
    fine_tuned = _fine_tuned(config, metrics)
    key = "data.init_args.max_train_examples"
    train_subset = _as_int(config_get(config, key), key, where) if fine_tuned else None
    task_loss = decoder and fine_tuned and len(tasks) > 1 and args.get("loss_weighting") == "task"
    variant = _variant(args, decoder, train_subset, task_loss)
    row = Row(display_name(str(args["backbone"])), decoder, shots, fine_tuned, variant)
    subset = None
    for key in ("data.init_args.max_eval_examples", "data.init_args.max_examples"):
        subset = _as_int(config_get(config, key), key, where)
        if subset is not None:
            break
    device = device or (str(config_get(config, "cost/device")) if _is_set(config_get(config, "cost/device")) else None)
    return Run(source, row, tasks, dict(metrics), time, subset, config, device)
