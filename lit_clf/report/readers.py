"""Finished runs read from their files, each into a :class:`~lit_clf.report.runs.Run`.

Three sources: a Lightning CSVLogger folder (``config.yaml`` beside ``metrics.csv``), a W&B run folder
(``files/config.yaml`` with ``files/wandb-summary.json``, or an offline run's ``run-<id>.wandb`` log) and a row of
a W&B runs-table export. Users read the same in ``lit-clf-report --help`` (:mod:`lit_clf.report.cli`). Every file
is read as data (YAML with ``safe_load``, JSON, CSV): nothing in it is imported or run.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from lit_clf.report.runs import ReportError, Run, run_from_config
from lit_clf.report.wandb_files import read_wandb_run

__all__ = ["find_runs", "read_csv_run", "read_metrics_csv", "read_run", "read_wandb_export", "read_yaml"]


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
