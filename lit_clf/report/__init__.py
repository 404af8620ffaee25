"""Table 3 of Zhao et al. (2024) from this project's runs: ``lit-clf-report`` / ``python -m lit_clf.report``.

``paper``        the table's columns and rows, the paper's numbers, model display names
``runs``         a finished run as the report sees it (:class:`Run`) and the config -> row rules
``readers``      finished runs read from their files (CSV log folders, W&B run folders, W&B exports)
``identity``     what a run is (dataset, model, tasks, shots, fine-tuned), shared with run names
``wandb_files``  an offline W&B run's ``run-<id>.wandb`` log, read without a server
``table``        runs -> :class:`Table` (the newest run per cell) -> Markdown or CSV
``cli``          the command line

    runs = find_runs(["runs"])
    print(render(build_table(runs, paper=True)))
"""

from lit_clf.report.cli import main
from lit_clf.report.paper import COLUMNS, PAPER_TABLE3, SHOT_NAMES, Column, Row, display_name, paper_table
from lit_clf.report.readers import find_runs, read_run, read_wandb_export, read_yaml
from lit_clf.report.runs import ReportError, Run, config_get, model_id
from lit_clf.report.table import Table, build_table, render, to_csv, to_markdown
from lit_clf.report.wandb_files import WandbRunLog, read_wandb_run

__all__ = [
    "COLUMNS",
    "PAPER_TABLE3",
    "SHOT_NAMES",
    "Column",
    "ReportError",
    "Row",
    "Run",
    "Table",
    "WandbRunLog",
    "build_table",
    "config_get",
    "display_name",
    "find_runs",
    "main",
    "model_id",
    "paper_table",
    "read_run",
    "read_wandb_export",
    "read_wandb_run",
    "read_yaml",
    "render",
    "to_csv",
    "to_markdown",
]
