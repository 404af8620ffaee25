"""Table 3 of Zhao et al. (2024) as data: its columns, its rows, the paper's numbers and its model names.

Datasets are keyed as the DataModules name them (``newsgroups``, ``massive``); ``20NG`` and ``MASSIVE`` are only
the titles the columns show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "COLUMNS",
    "DATASET_TASKS",
    "DATASET_TITLES",
    "PAPER_TABLE3",
    "SHOT_NAMES",
    "Column",
    "Row",
    "display_name",
    "paper_row",
    "paper_table",
    "row_sort_key",
]

#: Each dataset's two tasks, in the paper's column order.
DATASET_TASKS = {"newsgroups": ("topic20", "topic7"), "massive": ("intent", "slots")}
#: How the paper titles each dataset's columns.
DATASET_TITLES = {"newsgroups": "20NG", "massive": "MASSIVE"}
TASK_TITLES = {"topic20": "20-class", "topic7": "7-class", "intent": "Intent", "slots": "Slot Filling"}


@dataclass(frozen=True)
class Column:
    """One column of Table 3: a task of a dataset, trained alone ("Dual") or with its sibling task.

    Attributes:
        dataset: Dataset key (``newsgroups``, ``massive``).
        setup: ``Dual`` or ``Consolidated``.
        task: Task name as logged (``topic20``, ``intent``, ...).
        title: The task's title in the header (``20-class``, ``Slot Filling``).
    """

    dataset: str
    setup: str
    task: str
    title: str

    @property
    def dataset_title(self) -> str:
        """The dataset as the paper titles it: ``20NG``, ``MASSIVE``."""
        return DATASET_TITLES[self.dataset]

    @property
    def name(self) -> str:
        """Header text, e.g. ``MASSIVE Dual Slot Filling``."""
        return f"{self.dataset_title} {self.setup} {self.title}"

    @property
    def metric(self) -> str:
        """The logged test metric: accuracy for sequence tasks, MASSIVE slot F1 for slots."""
        return f"test/{self.task}_{'f1' if self.task == 'slots' else 'acc'}"


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
    # the paper's API models (lit_clf.api.ChatApiModule), by the OpenAI model ids
    "gpt-3.5-turbo": "GPT3.5",
    "gpt-3.5-turbo-0125": "GPT3.5",
    "gpt-4": "GPT4",
    "gpt-4-0613": "GPT4",
    "gpt-4o": "GPT4o",
    "gpt-4o-2024-08-06": "GPT4o",
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
