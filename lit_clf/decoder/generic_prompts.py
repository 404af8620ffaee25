"""Prompts for any dataset: a zero- or few-shot template written from the task specs, for data the paper's Listings
do not cover (a :class:`~lit_clf.data.text.TextDataModule`, another task set).

The answer syntax is the one every decoding mode reads (:mod:`lit_clf.decoder.answers`): a bare label for one
sequence task, a JSON list of word labels for one token task, a JSON object keyed by task name for several tasks.
The label lists are filled in when the prompt is rendered (``{labels_<task>}``), so one template serves any label
set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lit_clf.data.tasks import TaskSpec
from lit_clf.decoder.templates import PromptTemplate

__all__ = ["generic_template"]

_WHOLE = {"sequence": "the whole text", "token": "the text"}


def _instruction(task: TaskSpec, whole: str) -> str:
    if task.kind == "sequence":
        return f"classify {whole} as one of the labels in the list {{labels_{task.name}}}"
    return (
        f'label each word of {whole} with one of the labels in the list {{labels_{task.name}}}, or "{{other}}" for '
        "a word that none of them fits; the answer is a list with one label per word, in order"
    )


def generic_template(tasks: Sequence[TaskSpec], shots: int = 0) -> PromptTemplate:
    """A template for ``tasks`` (answer order as given) with ``shots`` few-shot examples."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("generic_template: give at least one task")
    if len(tasks) == 1:
        (task,) = tasks
        what = "the label" if task.kind == "sequence" else "the list of labels, as a JSON list,"
        lines = [
            f"You will be given a text. Your task is to {_instruction(task, 'the text')}.",
            f"Output {what} only and absolutely nothing else.",
        ]
    else:
        keys = ", ".join(json.dumps(task.name) for task in tasks)
        lines = [
            f"You will be given a text and {len(tasks)} classification tasks. Answer with one JSON object whose fields "
            f"{keys} hold the answers of the tasks, in this order.",
            *(f"Task {task.name!r}: {_instruction(task, _WHOLE[task.kind])}." for task in tasks),
            "Output the JSON object only and absolutely nothing else.",
        ]
    if shots:
        lines += ["", "Below are some examples with the correct answers:", "", "{examples}"]
    lines += ["", "Text: {text}", "Answer:"]
    prompt = "\n".join(lines)  # its only braces are the placeholders: labels_<task>, other, examples, text
    keys_tuple = tuple(task.name for task in tasks) if len(tasks) > 1 else ()
    names = tuple(task.name for task in tasks)
    return PromptTemplate(names, shots, prompt, keys=keys_tuple, source="generic prompt")
