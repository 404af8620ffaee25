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

The model is `model.init_args.backbone` in both families. A run is fine-tuned ("w/ FT") when it logged `train/`
or `val/` metrics or trained steps, or was tested from a checkpoint (`ckpt_path`); a `lit-clf test` of a released
model is "w/o FT". Decoder rows carry their shots (`model.init_args.shots`: 0 Zero-shot, 5 Five-shot), and, when
not the paper's setting, their decoding and LoRA/QLoRA in parentheses.

Examples:
  python -m lit_clf.report runs --paper
  python -m lit_clf.report runs/massive-roberta-base-intent runs/decoder --format csv --out table3.csv
  python -m lit_clf.report --wandb-export wandb_export.csv --paper
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

from lit_clf.report.readers import find_runs, read_wandb_export
from lit_clf.report.runs import ReportError
from lit_clf.report.table import build_table, render

__all__ = ["main"]

PROG = "lit-clf-report"
BEGIN, END = "<!-- lit-clf-report: begin -->", "<!-- lit-clf-report: end -->"


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
    parser.add_argument(
        "--update",
        metavar="FILE",
        help=f"replace the part of FILE (e.g. docs/RESULTS.md) between the lines {BEGIN} and {END} with the table",
    )
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
    if args.update:
        _update(Path(args.update), text)
    elif args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _update(path: Path, text: str) -> None:
    """Put ``text`` between the report markers of ``path``, keeping the rest of the file."""
    try:
        document = path.read_text(encoding="utf-8")
    except OSError as err:
        print(f"{PROG}: error: {path}: cannot read ({err.strerror or err})", file=sys.stderr)
        raise SystemExit(2) from None
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        print(f"{PROG}: error: {path}: no {BEGIN} ... {END} lines to put the table between", file=sys.stderr)
        raise SystemExit(2)
    head = document[: start + len(BEGIN)]
    path.write_text(f"{head}\n{text}{document[end:]}", encoding="utf-8")
