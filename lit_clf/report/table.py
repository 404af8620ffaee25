"""Table 3 filled from runs (the newest run per cell), and written out as Markdown or CSV.

A run with one task fills a "Dual" cell, a run with both tasks of a dataset the "Consolidated" cells. If several
runs fill the same cell the newest wins, and the table's notes say so. Values are in percent with one decimal.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lit_clf.report.identity import dataset_name
from lit_clf.report.paper import COLUMNS, DATASET_TASKS, Row, paper_row, paper_table, row_sort_key
from lit_clf.report.runs import Run

__all__ = ["Table", "build_table", "columns_of", "render", "to_csv", "to_markdown"]


@dataclass
class Table:
    """Table 3 filled from runs.

    Attributes:
        rows: Rows in the paper's order (:func:`row_sort_key`).
        cells: (row, column index) -> the run that fills the cell.
        paper: Row -> the paper's eight values in percent (only with ``paper=True``).
        notes: What the reader should know: cells several runs fill, skipped runs, subsets.
        others: Runs on tasks outside Table 3 (your own data, WNUT 17) that logged test metrics.
    """

    rows: list[Row]
    cells: dict[tuple[Row, int], Run]
    paper: dict[Row, tuple[float, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    others: list[Run] = field(default_factory=list)

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


#: Two logs of one run (its CSV folder and its W&B copy) finish within this many seconds of each other.
TWIN_SECONDS = 120.0


def _drop_twins(runs: Sequence[Run], notes: list[str] | None = None) -> list[Run]:
    """Runs without repeats of one run logged twice (the paper configs log to CSV and W&B): same row, tasks,
    test subset and Table 3 metrics, finished within :data:`TWIN_SECONDS` of each other. The first copy is kept
    (path order puts ``runs/<name>/`` before ``runs/wandb/``) and each dropped copy is named in ``notes``. Separate
    runs that happen to score the same (all 0.0 on a small subset) are not twins: they differ in subset or time."""
    kept: list[Run] = []
    first: dict[tuple, list[Run]] = {}
    for run in runs:
        tests = tuple(round(run.metrics[key], 6) if key in run.metrics else None for key in _TABLE_METRICS)
        key = (run.row, run.tasks, tests, run.subset)
        twin = next(
            (k for k in first.get(key, []) if not (run.time and k.time) or abs(run.time - k.time) <= TWIN_SECONDS), None
        )
        if twin is not None:
            if notes is not None:
                notes.append(f"{run.source}: the same run as {twin.source} (logged twice), counted once")
            continue
        first.setdefault(key, []).append(run)
        kept.append(run)
    return kept


def _candidates(runs: Sequence[Run], notes: list[str]) -> dict[tuple[Row, int], list[tuple[int, Run]]]:
    """(row, column) -> the (input position, run) pairs that have the cell's test metric."""
    found: dict[tuple[Row, int], list[tuple[int, Run]]] = {}
    for position, run in enumerate(runs):
        columns = [i for i in columns_of(run.tasks) if COLUMNS[i].metric in run.metrics]
        if not columns_of(run.tasks) and _test_scores(run):
            continue  # another dataset's run: the "other runs" table
        if not columns:
            wanted = ", ".join(COLUMNS[i].metric for i in columns_of(run.tasks)) or "tasks of one Table 3 dataset"
            notes.append(f"{run.source}: skipped, no {wanted} (tasks: {', '.join(run.tasks)})")
            continue
        if run.subset is not None:
            notes.append(
                f"{run.source}: scores are on a subset of {run.subset} test examples "
                "(data.init_args.max_eval_examples or max_examples)"
            )
        for column in columns:
            found.setdefault((run.row, column), []).append((position, run))
    return found


def build_table(runs: Sequence[Run], paper: bool = False) -> Table:
    """Fill Table 3: the newest run per cell (ties: the later one in ``runs``; a run logged to both CSV and W&B
    counts once); with ``paper``, also the paper's values, and its rows that no run reproduces."""
    notes: list[str] = []
    found = _candidates(_drop_twins(runs, notes), notes)
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
    others = [run for run in _drop_twins(runs) if not columns_of(run.tasks) and _test_scores(run)]
    return Table(ordered, cells, values, notes, others)


def _test_scores(run: Run) -> dict[str, float]:
    """The run's main test scores: ``test/<task>_acc`` and ``test/<task>_f1``."""
    return {
        key: value
        for task in run.tasks
        for key, value in run.metrics.items()
        if key in (f"test/{task}_acc", f"test/{task}_f1")
    }


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
    """The table as GitHub Markdown: a ``Model`` column with the paper's row names, then the eight columns; then,
    when runs recorded it (:class:`lit_clf.run.cost.RunCost`), what each run in the table cost."""
    header = ["Model (ours / paper)" if table.paper else "Model", *(column.name for column in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for row in table.rows:
        cells = [row.label, *(_cell_text(table, row, i) for i in range(len(COLUMNS)))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + _others_markdown(table) + _cost_markdown(table)


def _others_markdown(table: Table) -> str:
    """Runs on other datasets: model, dataset, their test scores in percent."""
    if not table.others:
        return ""

    lines = ["", "| Run | Model | Dataset | Test scores |", "|---|---|---|---|"]
    for run in table.others:
        scores = ", ".join(f"{key.removeprefix('test/')} {100 * value:.1f}" for key, value in _test_scores(run).items())
        data = (run.config or {}).get("data") or {}
        dataset = dataset_name(data.get("class_path"), (data.get("init_args") or {}).get("name"), only_lit_clf=True)
        lines.append(f"| {Path(run.source).name} | {run.row.label} | {dataset} | {scores} |")
    return "\n".join(lines) + "\n"


def _cost_markdown(table: Table) -> str:
    """Per run used in the table (in row order): its cells, device, wall hours, device-hours and energy."""
    used: dict[str, tuple[Run, list[str]]] = {}
    for row in table.rows:
        for column in range(len(COLUMNS)):
            run = table.cells.get((row, column))
            if run is not None:
                used.setdefault(run.source, (run, []))[1].append(COLUMNS[column].name)
    for run in table.others:
        used.setdefault(run.source, (run, ["test (other dataset)"]))
    costed = [(run, columns) for run, columns in used.values() if run.cost]
    if not costed:
        return ""
    lines = [
        "",
        "| Run | Row | Cells | Device | Wall h | Device-hours | Energy kWh |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for run, columns in costed:
        cost = run.cost
        energy = f"{cost['energy_kwh']:.3f}" if "energy_kwh" in cost else ""
        lines.append(
            f"| {Path(run.source).name} | {run.row.label} | {', '.join(columns)} | {run.device or ''} | "
            f"{cost.get('wall_s', 0) / 3600:.2f} | {cost.get('device_hours', 0):.2f} | {energy} |"
        )
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
