"""lit_clf.report.paper: model display names, the paper's Table 3 numbers and its row order, docs/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_clf.report.paper import PAPER_TABLE3, Row, display_name, paper_table, row_sort_key

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("roberta-base", "RoBERTa-base"),
        ("/models/roberta-large/", "RoBERTa-large"),
        ("meta-llama/Meta-Llama-3-8B", "Llama3-8B"),
        ("meta-llama/Meta-Llama-3-70B-Instruct", "Llama3-70B-Instruct"),
        ("meta-llama/Llama-2-7b-hf", "Llama2-7B"),
        ("meta-llama/Llama-2-70b-chat-hf", "Llama2-70B-Chat"),
        ("meta-llama/Llama-3.1-8B-Instruct", "Llama3.1-8B-Instruct"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
        ("/shared/models/smollm2-135m-instruct", "SmolLM2-135M-Instruct"),
        ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("/tmp/some-model", "some-model"),
    ],
)
def test_display_names(model_id, name):
    assert display_name(model_id) == name


def test_paper_table_is_parsed_and_sorts_in_the_papers_order():
    table = paper_table()
    assert len(table) == 24
    assert table[Row("RoBERTa-base")] == (86.7, 93.6, 86.5, 93.6, 88.9, 83.4, 89.1, 83.6)
    assert table[Row("Llama3-70B", True, 5, True)] == (91.9, 96.5, 92.1, 96.8, 90.8, 86.0, 90.2, 86.8)
    assert table[Row("Llama3-70B", True, 0, False)][:4] == (69.5, 67.0, 56.7, 78.0)
    assert sorted(table, key=row_sort_key) == list(table)


def test_paper_rows_are_copied_verbatim(paper_text):
    lines = paper_text.read_text(encoding="utf-8").splitlines()
    assert PAPER_TABLE3.splitlines() == lines[156:180]


def test_results_doc_shows_the_papers_table():
    text = (REPO / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    for line in PAPER_TABLE3.splitlines():
        words = line.split()
        assert "| " + " ".join(words[:-8]) + " | " + " | ".join(words[-8:]) + " |" in text
    assert "python -m lit_clf.report runs --paper" in text and "## Runs made by this project" in text
