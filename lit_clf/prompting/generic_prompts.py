"""Prompts for any dataset: a zero- or few-shot template written from the task specs, for data the paper's Listings
do not cover (a :class:`~lit_clf.data.text.TextDataModule`, another task set).

The answer syntax is the one every decoding mode reads (:mod:`lit_clf.prompting.answers`), in either style of Yu et al.
("Open, Closed, or Small Language Models for Text Classification?"): ``serial`` (plain text: the value of one task,
or one ``name: value`` line per task) or ``json`` (one JSON object keyed by task name). A value is a label for a
sequence task, a JSON list of labels for a multi-label task and a JSON list of word labels for a token task. The
label lists are filled in when the prompt is rendered (``{labels_<task>}``), so one template serves any label set;
optional label descriptions are written into the prompt, one line per label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from lit_clf.data.tasks import TaskSpec
from lit_clf.prompting.answers import answer_style
from lit_clf.prompting.templates import PromptTemplate

__all__ = ["check_label_descriptions", "generic_template"]

_WHOLE = {"sequence": "the whole text", "multilabel": "the whole text", "token": "the text"}


def _instruction(task: TaskSpec, whole: str) -> str:
    labels = f"{{labels_{task.name}}}"
    if task.kind == "sequence":
        return f"classify {whole} as one of the labels in the list {labels}"
    if task.kind == "multilabel":
        return (
            f"choose every label in the list {labels} that applies to {whole} (none, one or several); the answer is "
            "a JSON list of those labels in the order of the list, [] when none applies"
        )
    return (
        f'label each word of {whole} with one of the labels in the list {labels}, or "{{other}}" for '
        "a word that none of them fits; the answer is a JSON list with one label per word, in order"
    )


def _describe(task: TaskSpec, descriptions: Mapping[str, str]) -> list[str]:
    """One line per described label; braces doubled, as the template is filled with ``str.format``."""
    lines = [f"Labels of {task.name!r}:"]
    for label in task.labels:
        if label in descriptions:
            lines.append(f"- {label}: {descriptions[label]}".replace("{", "{{").replace("}", "}}"))
    return lines


def check_label_descriptions(
    tasks: Sequence[TaskSpec], descriptions: Mapping[str, Mapping[str, str]] | None, option: str = "label_descriptions"
) -> None:
    """Raise a one-line ValueError naming ``option`` for a task or label the descriptions name but the tasks lack."""
    by_name = {task.name: task for task in tasks}
    for name, labels in (descriptions or {}).items():
        if name not in by_name:
            raise ValueError(f"{option}: no task {name!r} (tasks: {', '.join(by_name)})")
        if not isinstance(labels, Mapping):
            raise ValueError(f"{option}.{name}: expected a mapping label -> description")
        unknown = [label for label in labels if label not in by_name[name].labels]
        if unknown:
            raise ValueError(f"{option}.{name}: {unknown[0]!r} is not a label of task {name!r}")


def generic_template(
    tasks: Sequence[TaskSpec],
    shots: int = 0,
    style: str | None = None,
    descriptions: Mapping[str, Mapping[str, str]] | None = None,
) -> PromptTemplate:
    """A template for ``tasks`` (answer order as given) with ``shots`` few-shot examples.

    Args:
        tasks: The tasks, in answer order.
        shots: Few-shot examples per prompt.
        style: ``serial`` or ``json``; unset: ``serial`` for one task, ``json`` for several.
        descriptions: Optional task name -> label -> description, written below the instructions.
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError("generic_template: give at least one task")
    check_label_descriptions(tasks, descriptions)
    style = answer_style(tasks, style)
    if len(tasks) == 1 and style == "serial":
        (task,) = tasks
        what = "the label" if task.kind == "sequence" else "the JSON list of labels"
        lines = [
            f"You will be given a text. Your task is to {_instruction(task, 'the text')}.",
            f"Output {what} only and absolutely nothing else.",
        ]
    else:
        names = ", ".join(json.dumps(task.name) for task in tasks)
        if style == "json":
            frame = f"Answer with one JSON object whose fields {names} hold the answers of the tasks, in this order."
            output = "Output the JSON object only and absolutely nothing else."
        else:
            frame = f"Answer with one line per task, in this order: {names}; each line is the task's name, a colon "
            frame += "and its answer."
            output = "Output these lines only and absolutely nothing else."
        count = "a classification task" if len(tasks) == 1 else f"{len(tasks)} classification tasks"
        lines = [
            f"You will be given a text and {count}. {frame}",
            *(f"Task {task.name!r}: {_instruction(task, _WHOLE[task.kind])}." for task in tasks),
            output,
        ]
    for task in tasks:
        if (descriptions or {}).get(task.name):
            lines += _describe(task, descriptions[task.name])
    if shots:
        lines += ["", "Below are some examples with the correct answers:", "", "{examples}"]
    lines += ["", "Text: {text}", "Answer:"]
    keys = tuple(task.name for task in tasks) if style == "json" else ()
    names_tuple = tuple(task.name for task in tasks)
    return PromptTemplate(names_tuple, shots, "\n".join(lines), keys=keys, source="generic prompt", style=style)
