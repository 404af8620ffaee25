"""The prompt options every generative family shares (``shots``, ``shots_draw``, ``prompt_file``, ``prompt_style``,
``label_descriptions``): which template they give, and the checks that refuse options that cannot work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lit_clf.data.base import DatasetInfo
from lit_clf.data.tasks import TaskSpec
from lit_clf.prompting.answers import STYLES
from lit_clf.prompting.encoding import SHOTS_DRAWS
from lit_clf.prompting.generic_prompts import check_label_descriptions, generic_template
from lit_clf.prompting.templates import PromptTemplate, get_template, paper_key


def prompt_template(
    dataset: str | None,
    tasks: Sequence[TaskSpec],
    shots: int,
    prompt_file: str | Path | None = None,
    prompt_style: str | None = None,
    label_descriptions: Mapping[str, Mapping[str, str]] | None = None,
) -> PromptTemplate:
    """The prompt: the ``prompt_file``, else the paper's for ``dataset`` (None: the one for these tasks), else a
    generic one written from the task specs (:func:`~lit_clf.prompting.generic_prompts.generic_template`).

    Raises:
        ValueError: ``prompt_style`` or ``label_descriptions`` given for a prompt that is not the generic one (a
            paper prompt or a file fixes its own style and wording).
    """
    names = [task.name for task in tasks]
    if prompt_file is None and paper_key(names, shots, dataset) is None:
        return generic_template(tasks, shots, prompt_style, label_descriptions)
    template = get_template(dataset, names, shots, path=prompt_file)
    if prompt_style not in (None, template.style):
        raise ValueError(
            f"prompt_style={prompt_style!r}: {template.source} answers in the {template.style} style; "
            "a prompt_file sets its own (style: ...)"
        )
    if label_descriptions:
        raise ValueError(
            f"label_descriptions: {template.source} is not the generic prompt; write the descriptions into a "
            "prompt_file instead"
        )
    return template


def check_prompt_options(
    tasks: Sequence[TaskSpec],
    shots: int,
    shots_draw: str,
    prompt_style: str | None,
    label_descriptions: Mapping[str, Mapping[str, str]] | None,
) -> None:
    """One-line errors for prompt options that cannot work, shared by the featurizers that write prompts."""
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    if shots_draw not in SHOTS_DRAWS:
        raise ValueError(f"shots_draw: expected one of {', '.join(SHOTS_DRAWS)}, got {shots_draw!r}")
    if prompt_style is not None and prompt_style not in STYLES:
        raise ValueError(f"prompt_style: expected one of {', '.join(STYLES)}, got {prompt_style!r}")
    check_label_descriptions(tasks, label_descriptions)


def check_shot_pool(shots: int, info: DatasetInfo) -> None:
    """``shots`` few-shot examples need a pool of more than ``shots`` training examples (the query is never one)."""
    if shots and len(info.train) <= shots:
        raise ValueError(
            f"shots={shots}: the few-shot pool has {len(info.train)} training examples; it needs more "
            "than shots: use fewer shots or more training examples (in code, pass the DataModule's `info`)"
        )
