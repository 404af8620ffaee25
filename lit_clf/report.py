"""Table 3 of Zhao et al. (2024) from this project's runs, as Markdown or CSV.

Finds the runs under the given folders, reads their test metrics and prints them in the paper's Table 3
layout: one row per model x shots x fine-tuning, eight columns (20NG dual and consolidated: 20-class,
7-class accuracy; MASSIVE dual and consolidated: intent accuracy, slot F1), in percent with one decimal.
A run with one task fills a "Dual" cell, a run with both tasks of a dataset the "Consolidated" cells. If
several runs fill the same cell the newest wins, and stderr says so.

A run is
  * a Lightning log folder written by `lit-clf fit|test` with the CSVLogger: `config.yaml` (the resolved
    LightningCLI config) beside `metrics.csv` (the last non-empty value of each `test/...` column counts);
  * a W&B run folder (`wandb/run-*` or `wandb/offline-run-*`): `files/config.yaml` (W&B's `{key: {value: ...}}`
    form) with `files/wandb-summary.json`; an offline run, which has neither file, is read from its
    `run-<id>.wandb` log;
  * a row of a W&B runs-table export (`--wandb-export`; its columns are described below).

A run is fine-tuned ("w/ FT") when it logged `train/` or `val/` metrics or trained steps, or was tested
from a checkpoint (`ckpt_path`); a `lit-clf test` of a released model is "w/o FT". Decoder rows carry
their shots (`model.init_args.shots`: 0 Zero-shot, 5 Five-shot), and, when not the paper's setting,
their decoding and LoRA/QLoRA in parentheses.

Examples:
  python -m lit_clf.report runs --paper
  python -m lit_clf.report runs/massive-roberta-base-intent runs/decoder --format csv --out table3.csv
  python -m lit_clf.report --wandb-export wandb_export.csv --paper
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "COLUMNS",
    "PAPER_TABLE3",
    "Column",
    "ReportError",
    "Row",
    "Run",
    "Table",
    "build_table",
    "config_get",
    "display_name",
    "find_runs",
    "main",
    "paper_table",
    "read_run",
    "read_wandb_export",
    "render",
    "to_csv",
    "to_markdown",
]

PROG = "lit-clf-report"


class ReportError(Exception):
    """A problem the user can act on: the message names the file (and line) and what was expected."""


# ---------------------------------------------------------------------------------------------------------------------
# The table's layout and the paper's numbers


@dataclass(frozen=True)
class Column:
    """One column of Table 3: a task of a dataset, trained alone ("Dual") or with its sibling task."""

    dataset: str
    setup: str
    task: str
    title: str

    @property
    def name(self) -> str:
        """Header text, e.g. ``MASSIVE Dual Slot Filling``."""
        return f"{self.dataset} {self.setup} {self.title}"

    @property
    def metric(self) -> str:
        """The logged test metric: accuracy for sequence tasks, MASSIVE slot F1 for slots."""
        return f"test/{self.task}_{'f1' if self.task == 'slots' else 'acc'}"


#: Each dataset's two tasks, in the paper's column order.
DATASET_TASKS = {"20NG": ("topic20", "topic7"), "MASSIVE": ("intent", "slots")}
TASK_TITLES = {"topic20": "20-class", "topic7": "7-class", "intent": "Intent", "slots": "Slot Filling"}
COLUMNS = tuple(
    Column(dataset, setup, task, TASK_TITLES[task])
    for dataset, tasks in DATASET_TASKS.items()
    for setup in ("Dual", "Consolidated")
    for task in tasks
)

#: Table 3 of the paper, its rows copied verbatim from the text (lines 157-180 of the arXiv text).
PAPER_TABLE3 = """\
RoBERTa-base 86.7% 93.6% 86.5% 93.6% 88.9% 83.4% 89.1% 83.6%
RoBERTa-large 88.1% 94.2% 87.8% 94.6% 90.1% 85.0% 90.0% 84.7%
Llama2-7B Five-shot w/o FT 0% 0% 0% 0% 35.8% 4.6% 7.2% 7.9%
Llama2-7B Zero-shot w/o FT 25.1% 23.8% 11.4% 21.8% 30.3% 0% 0% 0%
Llama2-70B Five-shot w/o FT 0% 0% 0% 0% 70.8% 9.5% 62.7% 5.1%
Llama2-70B Zero-shot w/o FT 64.1% 44.9% 48.6% 62.7% 60.8% 0% 0% 0%
Llama2-7B Five-shot w/ FT 88.2% 94.6% 88.1% 93.9% 90.3% 84.0% 89.8% 84.1%
Llama2-7B Zero-shot w/ FT 89.5% 95.2% 89.2% 94.9% 90.4% 82.5% 89.6% 83.4%
Llama2-70B Five-shot w/ FT 88.4% 95.3% 88.7% 94.6% 90.0% 83.9% 90.0% 84.3%
Llama2-70B Zero-shot w/ FT 91.2% 96.3% 91.5% 96.6% 90.2% 83.1% 90.4% 83.6%
Llama3-8B Five-shot w/o FT 0% 0% 0% 0% 69.7% 2.0% 38.9% 5.9%
Llama3-8B Zero-shot w/o FT 52.2% 41.2% 34.1% 51.6% 61.7% 1.6% 0% 0%
Llama3-70B Five-shot w/o FT 0% 0% 0% 0% 80.6% 20.6% 70.7% 16.4%
Llama3-70B Zero-shot w/o FT 69.5% 67% 56.7% 78% 78.9% 12.2% 0% 0%
Llama3-8B Five-shot w/ FT 91.1% 95.9% 91% 96.1% 90.6% 86.2% 89.7% 84.5%
Llama3-8B Zero-shot w/ FT 91.6% 96.3% 90.8% 96.2% 90.6% 85.6% 90.0% 85.5%
Llama3-70B Five-shot w/ FT 91.9% 96.5% 92.1% 96.8% 90.8% 86.0% 90.2% 86.8%
Llama3-70B Zero-shot w/ FT 91.5% 96.1% 91.2% 96.2% 90.8% 85.8% 89.8% 86.3%
GPT3.5 Five-shot w/o FT 0% 0% 0% 0% 64.0% 2.0% 73.6% 21.0%
GPT3.5 Zero-shot w/o FT 72.9% 55.1% 62.3% 69.6% 60.7% 1.8% 69.6% 14.2%
GPT4 Five-shot w/o FT 0% 0% 0% 0% 83.3% 37.1% 79.9% 28.1%
GPT4 Zero-shot w/o FT 80.4% 74.5% 80.6% 88.5% 81.9% 13.6% 76.9% 21.6%
GPT4o Five-shot w/o FT 0% 0% 0% 0% 82.0% 18.9% 81.0% 39.4%
GPT4o Zero-shot w/o FT 77.4% 73.3% 73.6% 84.1% 62.7% 14.8% 0% 0%
"""

SHOT_NAMES = {0: "Zero-shot", 5: "Five-shot"}

#: Lower-cased hub id basename -> the paper's spelling; other Llama ids follow ``_LLAMA``, the rest keep the basename.
MODEL_NAMES = {
    "roberta-base": "RoBERTa-base",
    "roberta-large": "RoBERTa-large",
    "all-minilm-l6-v2": "all-MiniLM-L6-v2",
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct",
    "smollm2-135m": "SmolLM2-135M",
}
_LLAMA = re.compile(r"^(?:meta-)?llama-?(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)b(?:-(chat|instruct))?(?:-hf)?$")
_SIZE = re.compile(r"^(?P<family>.+?)-(?P<number>\d+(?:\.\d+)?)(?P<unit>[MB])(?:-|$)")


def display_name(model_id: str) -> str:
    """Row name of a hub id or local folder: ``meta-llama/Meta-Llama-3-8B`` -> ``Llama3-8B``.

    ``roberta-base`` -> ``RoBERTa-base``, ``meta-llama/Llama-2-7b-chat-hf`` -> ``Llama2-7B-Chat``,
    ``/models/all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2``; an unknown id keeps its basename.
    """
    base = model_id.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    if base.lower() in MODEL_NAMES:
        return MODEL_NAMES[base.lower()]
    llama = _LLAMA.match(base.lower())
    if llama:
        version, size, tuned = llama.groups()
        return f"Llama{version}-{size}B" + (f"-{tuned.capitalize()}" if tuned else "")
    return base


@dataclass(frozen=True)
class Row:
    """A row of Table 3: model x shots x fine-tuning (and a variant the paper did not use, if any).

    Attributes:
        model: Display name (:func:`display_name`).
        decoder: A decoder LLM (rows with shots) rather than an encoder.
        shots: Few-shot examples per prompt (decoders only).
        fine_tuned: Fine-tuned ("w/ FT") rather than evaluated as released ("w/o FT").
        variant: Settings beyond the paper's, e.g. ``constrained`` decoding or ``LoRA``; empty for the paper's.
    """

    model: str
    decoder: bool = False
    shots: int | None = None
    fine_tuned: bool = True
    variant: str = ""

    @property
    def label(self) -> str:
        """The row's name as the paper writes it: ``RoBERTa-base``, ``Llama3-8B Zero-shot w/ FT``."""
        if self.decoder:
            shots = SHOT_NAMES.get(self.shots or 0, f"{self.shots}-shot")
            label = f"{self.model} {shots} {'w/' if self.fine_tuned else 'w/o'} FT"
        else:
            label = self.model if self.fine_tuned else f"{self.model} w/o FT"
        return f"{label} ({self.variant})" if self.variant else label


def paper_table() -> dict[Row, tuple[float, ...]]:
    """:data:`PAPER_TABLE3` parsed: row -> the eight values in percent, in :data:`COLUMNS` order."""
    table = {}
    for line in PAPER_TABLE3.splitlines():
        words = line.split()
        name, values = words[: -len(COLUMNS)], tuple(float(v.rstrip("%")) for v in words[-len(COLUMNS) :])
        if len(name) == 1:
            table[Row(name[0])] = values
        else:
            shots = {v: k for k, v in SHOT_NAMES.items()}[name[1]]
            table[Row(name[0], decoder=True, shots=shots, fine_tuned=name[2] == "w/")] = values
    return table


def paper_row(row: Row) -> Row | None:
    """The paper's row that ``row`` reproduces, or None (a variant the paper did not run).

    The paper's "w/o FT" rows evaluated the instruction-tuned releases (configs/decoder/model/*-chat.yaml,
    *-instruct.yaml) but name them after the base model, so ``Llama2-7B-Chat ... w/o FT`` is ``Llama2-7B ...``.
    """
    if row.variant:
        return None
    model = row.model
    if row.decoder and not row.fine_tuned:
        model = re.sub(r"-(Chat|Instruct)$", "", model)
    return Row(model, row.decoder, row.shots, row.fine_tuned)


def _family_size(model: str) -> tuple[str, float]:
    match = _SIZE.match(model)
    if not match:
        return model, 0.0
    scale = 1e6 if match["unit"] == "M" else 1e9
    return match["family"], float(match["number"]) * scale


def row_sort_key(row: Row) -> tuple:
    """The paper's row order: encoders first (by name); then decoders by family (Llama 2, Llama 3, other
    open models, then GPT), w/o FT before w/ FT, smaller before larger, five-shot before zero-shot."""
    if not row.decoder:
        return (0, row.model.lower(), not row.fine_tuned, row.variant)
    family, size = _family_size(row.model)
    rank = {"Llama2": 0, "Llama3": 1}.get(family, 3 if family.startswith("GPT") else 2)
    return (1, rank, family.lower(), row.fine_tuned, size, -(row.shots or 0), row.model.lower(), row.variant)


# ---------------------------------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class Run:
    """One finished run: where it came from, its row, its tasks and its final metrics.

    Attributes:
        source: The run folder, or ``<export.csv>, line <n> (<run name>)``.
        row: The table row the run belongs to.
        tasks: The run's tasks (``data.init_args.tasks``).
        metrics: Metric key -> last value, e.g. ``test/intent_acc`` -> 0.889 (fractions, as logged).
        time: When the run finished (seconds since the epoch): the newest run wins a cell.
        subset: ``data.init_args.max_examples`` when set: the scores are on a subset, not the full split.
        config: The resolved LightningCLI config.
    """

    source: str
    row: Row
    tasks: tuple[str, ...]
    metrics: Mapping[str, float]
    time: float = 0.0
    subset: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


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
    """Trained in this run (train/val metrics, or steps taken) or tested from a checkpoint (``ckpt_path``)."""
    if _is_set(config_get(config, "ckpt_path")):
        return True
    if any(key.startswith(("train/", "val/")) for key in metrics):
        return True
    return any(metrics.get(key, 0) > 0 for key in ("step", "trainer/global_step"))


_MODEL_ARGS = ("backbone", "model", "shots", "decoding", "lora", "load_in_4bit")


def _model_section(config: Mapping) -> Mapping:
    """``{"class_path": ..., "init_args": {...}}`` of the model, also from a W&B config where Lightning's
    hyperparameter logging (after the CLI config) replaced ``model`` by the decoder's ``model`` argument: the
    module's arguments are then top-level keys."""
    model = config_get(config, "model")
    if isinstance(model, str):
        init_args = {key: config[key] for key in _MODEL_ARGS if key in config}
        return {"class_path": "lit_clf.decoder.DecoderGenerativeModule", "init_args": init_args}
    return {
        "class_path": config_get(config, "model.class_path"),
        "init_args": {name: config_get(config, f"model.init_args.{name}") for name in _MODEL_ARGS},
    }


def _variant(init_args: Mapping) -> str:
    """Decoder settings the paper did not use: decoding other than free generation, LoRA / QLoRA."""
    parts = []
    decoding = init_args.get("decoding")
    if _is_set(decoding) and decoding != "free":
        parts.append(str(decoding))
    if _is_set(init_args.get("lora")):
        parts.append("QLoRA" if init_args.get("load_in_4bit") in (True, "true", "True") else "LoRA")
    return ", ".join(parts)


def _as_int(value: Any, what: str, where: str) -> int | None:
    if not _is_set(value):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise ReportError(f"{where}: {what} should be a number, got {value!r}") from None


def run_from_config(config: Mapping, metrics: Mapping[str, float], source: str, where: str, time: float) -> Run:
    """Build a :class:`Run` from a resolved config and metrics; ``where`` names the config in errors."""
    tasks = _task_list(config_get(config, "data.init_args.tasks"))
    if not tasks:
        raise ReportError(f"{where}: no data.init_args.tasks (expected a resolved lit-clf config)")
    model = _model_section(config)
    args = model["init_args"]
    class_path = model["class_path"]
    decoder = "Decoder" in str(class_path) if _is_set(class_path) else not _is_set(args.get("backbone"))
    name = "model" if decoder else "backbone"
    if not _is_set(args.get(name)):
        raise ReportError(f"{where}: no model.init_args.{name} (expected a resolved lit-clf config)")
    shots = (_as_int(args.get("shots"), "model.init_args.shots", where) or 0) if decoder else None
    variant = _variant(args) if decoder else ""
    row = Row(display_name(str(args[name])), decoder, shots, _fine_tuned(config, metrics), variant)
    subset = _as_int(config_get(config, "data.init_args.max_examples"), "data.init_args.max_examples", where)
    return Run(source, row, tasks, dict(metrics), time, subset, config)


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
    return run_from_config(config, metrics, str(folder), str(config_file), metrics_file.stat().st_mtime)


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
    :func:`lit_clf.tracking.read_wandb_run`."""
    from lit_clf.tracking import read_wandb_run  # imports Lightning: only when there is an offline run to read

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
      * config, one column per key flattened with dots: ``model.class_path``, ``model.init_args.backbone``
        (encoders) or ``model.init_args.model`` (decoders), ``model.init_args.shots``, ``data.init_args.tasks``
        (``["intent","slots"]``), optionally ``ckpt_path``, ``model.init_args.decoding``,
        ``data.init_args.max_examples``; a top-level key exported as one JSON object (a ``model`` column holding
        ``{"class_path": ..., "init_args": {...}}``) works too;
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


# ---------------------------------------------------------------------------------------------------------------------
# The table


@dataclass
class Table:
    """Table 3 filled from runs.

    Attributes:
        rows: Rows in the paper's order (:func:`row_sort_key`).
        cells: (row, column index) -> the run that fills the cell.
        paper: Row -> the paper's eight values in percent (only with ``paper=True``).
        notes: What the reader should know: cells several runs fill, skipped runs, subsets.
    """

    rows: list[Row]
    cells: dict[tuple[Row, int], Run]
    paper: dict[Row, tuple[float, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def value(self, row: Row, column: int) -> float | None:
        """Our value in percent, or None for an empty cell."""
        run = self.cells.get((row, column))
        return None if run is None else 100 * run.metrics[COLUMNS[column].metric]

    def paper_value(self, row: Row, column: int) -> float | None:
        """The paper's value in percent, or None."""
        values = self.paper.get(row)
        return None if values is None else values[column]


def columns_of(tasks: Sequence[str]) -> list[int]:
    """Indices of the columns a run with ``tasks`` fills: one Dual cell, or both Consolidated cells."""
    for dataset, pair in DATASET_TASKS.items():
        if len(tasks) == 1 and tasks[0] in pair:
            setup = "Dual"
        elif len(tasks) == 2 and set(tasks) == set(pair):
            setup = "Consolidated"
        else:
            continue
        return [i for i, c in enumerate(COLUMNS) if c.dataset == dataset and c.setup == setup and c.task in tasks]
    return []


_TABLE_METRICS = sorted({column.metric for column in COLUMNS})


def _drop_twins(runs: Sequence[Run]) -> list[Run]:
    """Runs without repeats of one run logged twice (the paper configs log to CSV and W&B): same row, tasks and
    Table 3 metrics. The first copy is kept (path order puts ``runs/<name>/`` before ``runs/wandb/``)."""
    kept, seen = [], set()
    for run in runs:
        tests = tuple(round(run.metrics[key], 6) if key in run.metrics else None for key in _TABLE_METRICS)
        if (run.row, run.tasks, tests) not in seen:
            seen.add((run.row, run.tasks, tests))
            kept.append(run)
    return kept


def _candidates(runs: Sequence[Run], notes: list[str]) -> dict[tuple[Row, int], list[tuple[int, Run]]]:
    """(row, column) -> the (input position, run) pairs that have the cell's test metric."""
    found: dict[tuple[Row, int], list[tuple[int, Run]]] = {}
    for position, run in enumerate(runs):
        columns = [i for i in columns_of(run.tasks) if COLUMNS[i].metric in run.metrics]
        if not columns:
            wanted = ", ".join(COLUMNS[i].metric for i in columns_of(run.tasks)) or "tasks of one Table 3 dataset"
            notes.append(f"{run.source}: skipped, no {wanted} (tasks: {', '.join(run.tasks)})")
            continue
        if run.subset is not None:
            notes.append(f"{run.source}: data.init_args.max_examples={run.subset}, scores are on a subset")
        for column in columns:
            found.setdefault((run.row, column), []).append((position, run))
    return found


def build_table(runs: Sequence[Run], paper: bool = False) -> Table:
    """Fill Table 3: the newest run per cell (ties: the later one in ``runs``; a run logged to both CSV and W&B
    counts once); with ``paper``, also the paper's values, and its rows that no run reproduces."""
    notes: list[str] = []
    found = _candidates(_drop_twins(runs), notes)
    cells = {cell: max(pairs, key=lambda pair: (pair[1].time, pair[0]))[1] for cell, pairs in found.items()}
    rows = {row for row, _ in cells}
    values: dict[Row, tuple[float, ...]] = {}
    if paper:
        known = paper_table()
        for row in rows:
            if paper_row(row) in known:
                values[row] = known[paper_row(row)]
        reproduced = {paper_row(row) for row in values}
        for row, row_values in known.items():
            if row not in reproduced:
                rows.add(row)
                values[row] = row_values
    ordered = sorted(rows, key=row_sort_key)
    for row in ordered:
        for column in range(len(COLUMNS)):
            pairs = found.get((row, column), [])
            if len(pairs) > 1:
                chosen = cells[(row, column)]
                others = ", ".join(run.source for _, run in pairs if run is not chosen)
                notes.append(
                    f"{row.label}, {COLUMNS[column].name}: {len(pairs)} runs; "
                    f"using the newest, {chosen.source} (not {others})"
                )
    return Table(ordered, cells, values, notes)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _cell_text(table: Table, row: Row, column: int) -> str:
    """``86.7``; with the paper's values ``ours / paper`` (``-`` for a missing side, empty if both are)."""
    ours = _number(table.value(row, column))
    if not table.paper:
        return ours
    theirs = _number(table.paper_value(row, column))
    return f"{ours or '-'} / {theirs or '-'}" if ours or theirs else ""


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown: a ``Model`` column with the paper's row names, then the eight columns."""
    header = ["Model (ours / paper)" if table.paper else "Model", *(column.name for column in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for row in table.rows:
        cells = [row.label, *(_cell_text(table, row, i) for i in range(len(COLUMNS)))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """The table as CSV: ``Model, Shots, FT, Variant`` then the eight columns (with ``paper``, each followed by
    a ``<column> (paper)`` column); numbers in percent with one decimal, empty cells empty."""
    header = ["Model", "Shots", "FT", "Variant"]
    for column in COLUMNS:
        header += [column.name, f"{column.name} (paper)"] if table.paper else [column.name]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        line = [row.model, "" if row.shots is None else row.shots, "w/ FT" if row.fine_tuned else "w/o FT", row.variant]
        for i in range(len(COLUMNS)):
            line.append(_number(table.value(row, i)))
            if table.paper:
                line.append(_number(table.paper_value(row, i)))
        writer.writerow(line)
    return out.getvalue()


def render(table: Table, format: str = "markdown") -> str:
    """The table as ``markdown`` or ``csv`` text."""
    if format not in ("markdown", "csv"):
        raise ValueError(f"format must be 'markdown' or 'csv', got {format!r}")
    return to_markdown(table) if format == "markdown" else to_csv(table)


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        epilog="--wandb-export CSV: " + inspect.cleandoc(read_wandb_export.__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", metavar="RUN_DIR_OR_ROOT", help="run folders, or folders to search")
    parser.add_argument(
        "--wandb-export", action="append", default=[], metavar="CSV", help="a W&B runs export (repeatable)"
    )
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown", help="output format")
    parser.add_argument("--paper", action="store_true", help="add the paper's Table 3 values (cells: ours / paper)")
    parser.add_argument("--out", metavar="FILE", help="write the table to FILE instead of stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lit-clf-report`` and ``python -m lit_clf.report``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb_export:
        parser.error("give at least one RUN_DIR_OR_ROOT or --wandb-export CSV")
    try:
        runs = find_runs(args.paths) if args.paths else []
        for export in args.wandb_export:
            runs += read_wandb_export(export)
        table = build_table(runs, paper=args.paper)
    except ReportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    for note in table.notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    text = render(table, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
