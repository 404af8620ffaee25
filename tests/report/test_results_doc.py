"""docs/RESULTS.md holds exactly what the report makes of the committed run folders in docs/runs/."""

from __future__ import annotations

import pytest

from lit_clf.report import build_table, find_runs, to_markdown
from lit_clf.report.cli import BEGIN, END
from tests.helpers import REPO


def test_results_md_is_the_report_of_docs_runs():
    runs = REPO / "docs" / "runs"
    if not runs.is_dir():
        pytest.skip("no committed runs yet")
    text = (REPO / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    block = text[text.index(BEGIN) + len(BEGIN) + 1 : text.index(END)]
    assert block == to_markdown(build_table(find_runs([runs]), paper=True))
