"""Finished runs, each read into a :class:`Run` (its table row, tasks and test metrics).

Three sources: a Lightning CSVLogger folder (``config.yaml`` beside ``metrics.csv``), a W&B run folder
(``files/config.yaml`` with ``files/wandb-summary.json``, or an offline run's ``run-<id>.wandb`` log) and a row of
a W&B runs-table export. Users read the same in ``lit-clf-report --help`` (:mod:`lit_clf.report.cli`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from lit_clf.report.identity import is_fine_tuned
from lit_clf.report.paper import Row, display_name
from lit_clf.report.wandb_files import read_wandb_run

__all__ = [
    "ReportError",
    "Run",
    "config_get",
    "find_runs",
    "model_id",
    "model_section",
    "read_run",
    "read_wandb_export",
    "read_yaml",
]


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
_MODEL_ARGS = ("backbone", "shots", "decoding", "lora", "load_in_4bit", "pooling", "prompt_file", "loss_weighting")
_DECODER = "lit_clf.decoder.DecoderGenerativeModule"


def model_section(config: Mapping) -> dict[str, Any]:
    """The model's ``{"class_path": ..., "init_args": {...}}`` with the arguments the report reads (None where
    unset), from a resolved config in any form a run is read from (nested, or flattened by a W&B export)."""
    section = {
        "class_path": config_get(config, "model.class_path"),
        "init_args": {name: config_get(config, f"model.init_args.{name}") for name in _MODEL_ARGS},
    }
    return _legacy_decoder_section(config, section) or section


def _legacy_decoder_section(config: Mapping, section: dict[str, Any]) -> dict[str, Any] | None:
    """Legacy: ``section`` of a decoder run made before the decoder's ``model`` argument was renamed ``backbone``;
    None for any other run.

    Such a config names the model ``model.init_args.model``. In its W&B config, Lightning's hyperparameter logging
    (after the CLI config) could even replace the whole ``model`` section by that argument, leaving the module's
    other arguments as top-level keys. Only the decoder ever had a ``model`` argument.
    """
    replaced = config_get(config, "model")
    if isinstance(replaced, str):
        init_args = {name: config.get(name) for name in _MODEL_ARGS}
        return {"class_path": _DECODER, "init_args": {**init_args, "backbone": replaced}}
    old_id = config_get(config, "model.init_args.model")
    if not _is_set(old_id) or _is_set(section["init_args"]["backbone"]):
        return None
    class_path = section["class_path"] if _is_set(section["class_path"]) else _DECODER
    return {"class_path": class_path, "init_args": {**section["init_args"], "backbone": old_id}}


def model_id(config: Mapping) -> str | None:
    """The model's hub id or folder (``model.init_args.backbone``), or None if the config names none."""
    backbone = model_section(config)["init_args"]["backbone"]
    return str(backbone) if _is_set(backbone) else None


def _variant(init_args: Mapping, decoder: bool, train_subset: int | None = None, task_loss: bool = False) -> str:
    """Settings the paper did not use: a decoder's decoding other than free generation; a prompt file instead of
    the paper's prompt (the file's ``variant``, ``inline slot answer``, else its name:
    :func:`_prompt_variant`); heads reading another vector than
    the first token (a decoder backbone with heads: ``heads, last pooling``); LoRA / QLoRA; a consolidated decoder
    trained with ``loss_weighting: task`` (``task_loss``; for one task it equals the paper's loss); fine-tuning on
    ``train_subset`` examples of the training split (not comparable with a full-split run)."""
    parts = []
    decoding = init_args.get("decoding")
    if decoder and _is_set(decoding) and decoding != "free":
        parts.append(str(decoding))
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
    # Decoder rows (with shots): the decoder module and API chat models. Without a class path (an export that left
    # it out) only those have shots.
    decoder = "Encoder" not in str(class_path) if _is_set(class_path) else _is_set(args["shots"])
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


# ---------------------------------------------------------------------------------------------------------------------
# Readers: Lightning CSV folders, W&B run folders, W&B exports


def read_yaml(path: Path) -> dict:
    """A YAML mapping from ``path``; a ReportError naming the file if it is not one."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ReportError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a YAML mapping (a resolved lit-clf config), got {type(data).__name__}")
    return data


def read_metrics_csv(path: Path) -> dict[str, float]:
    """The last non-empty value of every column of a CSVLogger ``metrics.csv`` (test values sit in the last
    row that has them)."""
    metrics: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if not reader.fieldnames:
            raise ReportError(f"{path}: empty; expected a CSVLogger header (step, epoch, metric keys)")
        for row in reader:
            if None in row:
                raise ReportError(f"{path}, line {reader.line_num}: more values than the header has columns")
            for key, value in row.items():
                if value in (None, ""):
                    continue
                try:
                    metrics[key] = float(value)
                except ValueError:
                    raise ReportError(f"{path}, line {reader.line_num}: {key}={value!r} is not a number") from None
    return metrics


def read_csv_run(folder: Path) -> Run:
    """A Lightning CSVLogger run folder: ``config.yaml`` beside ``metrics.csv``."""
    metrics_file, config_file = folder / "metrics.csv", folder / "config.yaml"
    if not config_file.is_file():
        raise ReportError(f"{metrics_file}: no config.yaml beside it (expected a lit-clf run folder)")
    metrics = read_metrics_csv(metrics_file)
    config = read_yaml(config_file)
    device = _logged_device(folder / "hparams.yaml")
    return run_from_config(config, metrics, str(folder), str(config_file), metrics_file.stat().st_mtime, device)


def _logged_device(hparams: Path) -> str | None:
    """``cost/device`` from a CSV log's ``hparams.yaml`` (read by line: the file may hold Python-tagged values)."""
    if not hparams.is_file():
        return None
    found = re.search(r"^cost/device: *(.+)$", hparams.read_text(encoding="utf-8"), re.MULTILINE)
    return yaml.safe_load(found.group(1)) if found else None


def _numeric_items(data: Mapping[str, Any]) -> dict[str, float]:
    """Flat numeric metrics of a W&B summary (W&B's own ``_``-keys and non-numbers dropped)."""
    return {
        key: float(value)
        for key, value in data.items()
        if not key.startswith("_") and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def unwrap_wandb_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """W&B's ``config.yaml`` (``{key: {value: ...}}``, plus ``_wandb`` and ``wandb_version``) -> the plain config."""
    return {
        key: value["value"] if isinstance(value, Mapping) and "value" in value else value
        for key, value in raw.items()
        if not key.startswith("_") and key != "wandb_version"
    }


def read_wandb_files(folder: Path) -> Run:
    """A W&B run folder with ``files/config.yaml`` and ``files/wandb-summary.json`` (online runs)."""
    summary_file, config_file = folder / "files" / "wandb-summary.json", folder / "files" / "config.yaml"
    if not config_file.is_file():
        raise ReportError(f"{summary_file}: no config.yaml beside it (expected a W&B run's files/ folder)")
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"{summary_file}, line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_file}: expected a JSON object of metric keys")
    config = unwrap_wandb_config(read_yaml(config_file))
    return run_from_config(config, _numeric_items(summary), str(folder), str(config_file), summary_file.stat().st_mtime)


def read_wandb_log(folder: Path, log: Path) -> Run:
    """An offline W&B run (``wandb/offline-run-*``): W&B writes no ``files/config.yaml`` or ``wandb-summary.json``
    for it, so config and summary are replayed from its ``run-<id>.wandb`` log by
    :func:`lit_clf.report.wandb_files.read_wandb_run`."""
    try:
        logged = read_wandb_run(folder)
    except Exception as err:  # a damaged or foreign file: protobuf, JSON or struct errors
        raise ReportError(f"{log}: not a readable W&B run log ({type(err).__name__}: {err})") from None
    config = unwrap_wandb_config(logged.config)
    return run_from_config(config, _numeric_items(logged.summary), str(folder), str(log), log.stat().st_mtime)


def read_run(folder: str | os.PathLike) -> Run | None:
    """The run in ``folder`` (a Lightning log folder or a W&B run folder), or None if it holds none."""
    folder = Path(folder)
    if (folder / "metrics.csv").is_file():
        return read_csv_run(folder)
    if (folder / "files" / "wandb-summary.json").is_file():
        return read_wandb_files(folder)
    logs = sorted(folder.glob("run-*.wandb"))
    if logs and folder.name.startswith(("run-", "offline-run-")):
        return read_wandb_log(folder, logs[0])
    return None


def find_runs(roots: Iterable[str | os.PathLike]) -> list[Run]:
    """Every run in or under each root, in path order; a ReportError for a root without any."""
    runs, seen = [], set()
    for root in map(Path, roots):
        if not root.is_dir():
            raise ReportError(f"{root}: no such folder")
        found = 0
        # os.walk follows no symlinks below the root, so wandb/latest-run is not read twice.
        for dirpath, dirnames, _ in os.walk(root):
            folder = Path(dirpath)
            if folder == root and folder.name == "files" and (folder / "wandb-summary.json").is_file():
                folder = folder.parent  # a W&B run's files/ folder given as the root
            run = read_run(folder)
            if run is None:
                dirnames.sort()
                continue
            dirnames.clear()  # nothing below a run is another run (checkpoints/, files/, logs/)
            found += 1
            if folder.resolve() not in seen:
                seen.add(folder.resolve())
                runs.append(run)
        if not found:
            raise ReportError(
                f"{root}: no runs found (expected config.yaml + metrics.csv from lit-clf's CSVLogger, "
                "or W&B run folders with files/wandb-summary.json or run-<id>.wandb)"
            )
    return runs


def _parse_cell(text: str) -> Any:
    """An export cell: JSON where it parses (numbers, lists, objects, null), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _created(text: str, where: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{where}: Created={text!r} is not an ISO date and time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def read_wandb_export(path: str | os.PathLike) -> list[Run]:
    """Runs from a W&B runs-table export (the web UI's "Export as CSV"), one run per row.

    Expected columns (others are ignored):
      * config, one column per key flattened with dots: ``model.class_path`` (without it, a run with
        ``model.init_args.shots`` is a decoder), ``model.init_args.backbone`` (the model, in both families),
        ``model.init_args.shots``, ``data.init_args.tasks`` (``["intent","slots"]``), optionally ``ckpt_path``,
        ``model.init_args.decoding``, ``data.init_args.max_examples``; a top-level key exported as one JSON object
        (a ``model`` column holding ``{"class_path": ..., "init_args": {...}}``) works too;
      * summary metrics, named as logged: ``test/intent_acc``, ``test/slots_f1``, ``test/topic20_acc``,
        ``test/topic7_acc``, and ``train/loss`` or ``trainer/global_step`` if the run trained;
      * ``Name`` (shown in messages) and ``Created`` (ISO time; the newest run wins a cell; without it a
        later row wins over an earlier one).
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ReportError(f"{path}: no runs (expected a W&B runs export with a header and one row per run)")
    runs = []
    for line, row in enumerate(rows, start=2):
        cells = {key: _parse_cell(value) for key, value in row.items() if key and value not in (None, "")}
        where = f"{path}, line {line}"
        metrics = {k: float(v) for k, v in cells.items() if "/" in k and isinstance(v, (int, float))}
        config = {k: v for k, v in cells.items() if "/" not in k}
        time = _created(str(row["Created"]), where) if row.get("Created") else 0.0
        name = f" ({row['Name']})" if row.get("Name") else ""
        runs.append(run_from_config(config, metrics, f"{where}{name}", where, time))
    return runs
