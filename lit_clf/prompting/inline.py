"""Inline span answers for token tasks: the input rewritten with each span in brackets.

``wake me up at [time : five am] this week`` stands for the word labels
``Other Other Other Other time time Other Other``: MASSIVE's own ``annot_utt`` syntax. The paper's slot answer (a
list of labels, one per word, without the words) makes the model count positions; an inline answer copies each
word and marks the spans around it, so every label is written next to the words it covers.

A span is written ``[<type> : <words>]``: one space between words, ``" : "`` after the type, ``]`` right after the
last word. Span types are the task's word labels (``runs`` scheme: MASSIVE's ``time``, ``date``) or the entity
types of its BIO tags (``bio`` scheme: ``person`` for ``B-person``/``I-person``). Words outside every span are
written as they are. Rendering then parsing gives back the word labels exactly, up to what the scheme itself
cannot tell apart (two adjacent ``runs`` spans of one type are one run of equal labels).

Select it with ``token_format: inline`` in a prompt file (:mod:`lit_clf.prompting.templates`); the paper's
``labels`` format stays the default.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, get_args

from lit_clf.data.tasks import TaskSpec

__all__ = ["TOKEN_FORMATS", "TokenFormat", "parse_inline", "render_inline", "span_types", "spans_of", "word_labels_of"]

#: How a token task's value is written: ``labels`` (the paper: a JSON list, one label per word) or ``inline`` (the
#: words with each span in brackets).
TokenFormat = Literal["labels", "inline"]
TOKEN_FORMATS: tuple[str, ...] = get_args(TokenFormat)

# One span: "[" type ":" words "]"; the type holds no colon or bracket, the words no bracket.
_SPAN = re.compile(r"\[([^\[\]:]*):([^\[\]]*)\]")


def check_token_format(token_format: str, where: str = "token_format") -> str:
    """``token_format`` if it is one of :data:`TOKEN_FORMATS`; else a one-line ValueError naming ``where``."""
    if token_format not in TOKEN_FORMATS:
        raise ValueError(f"{where}: expected one of {', '.join(TOKEN_FORMATS)}, got {token_format!r}")
    return token_format


def span_types(task: TaskSpec) -> tuple[str, ...]:
    """The types a span of ``task`` can have, in label order: its labels but the outside one, or its BIO types."""
    if task.scheme != "bio":
        return tuple(label for label in task.labels if label != task.outside)
    types: dict[str, None] = {}
    for label in task.labels:
        if label != task.outside:
            types.setdefault(label.partition("-")[2] or label, None)
    return tuple(types)


def spans_of(task: TaskSpec, labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(start, end, type)`` of every span in ``labels`` (word labels of ``task``), ``end`` exclusive.

    ``runs``: a span is a maximal run of equal labels other than the outside one. ``bio``: ``B-x`` opens a span,
    ``I-x`` continues a span of type ``x`` (and opens one after anything else, as seqeval reads it).
    """
    spans: list[tuple[int, int, str]] = []
    for i, label in enumerate(labels):
        if label == task.outside:
            continue
        if task.scheme == "bio":
            prefix, _, kind = label.partition("-")
            kind = kind or label
            continues = prefix == "I" and spans and spans[-1][1] == i and spans[-1][2] == kind
        else:
            kind = label
            continues = spans and spans[-1][1] == i and spans[-1][2] == kind
        if continues:
            start, _, _ = spans[-1]
            spans[-1] = (start, i + 1, kind)
        else:
            spans.append((i, i + 1, kind))
    return spans


def word_labels_of(task: TaskSpec, num_words: int, spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """Word labels of ``num_words`` words from ``spans`` (``(start, end, type)``): the inverse of :func:`spans_of`."""
    labels = [task.outside] * num_words
    for start, end, kind in spans:
        for i in range(start, end):
            labels[i] = kind if task.scheme != "bio" else f"{'B' if i == start else 'I'}-{kind}"
    return labels


def render_inline(task: TaskSpec, words: Sequence[str], labels: Sequence[str]) -> str:
    """``words`` with each span of ``labels`` in brackets: ``wake me up at [time : five am]``.

    Raises:
        ValueError: ``labels`` does not have one label per word.
    """
    if len(labels) != len(words):
        raise ValueError(f"task {task.name!r}: {len(labels)} word labels for {len(words)} words")
    pieces, at = [], 0
    for start, end, kind in spans_of(task, labels):
        pieces.extend(words[at:start])
        pieces.append(f"[{kind} : {' '.join(words[start:end])}]")
        at = end
    pieces.extend(words[at:])
    return " ".join(pieces)


def parse_inline(text: str, task: TaskSpec, num_words: int | None = None) -> tuple[list[str], str]:
    """Read an inline answer back into word labels. Never raises.

    The first non-empty line is read (the caller drops a repeated ``Slots:`` cue). Each ``[type : words]`` is a
    span; every other whitespace word is outside. A span type is matched case-insensitively; an unknown one leaves
    its words outside and makes the answer invalid, as does a word count other than ``num_words`` (None:
    unchecked).

    Returns:
        ``(labels, problem)``: one label per word the model wrote, and the first problem found ("" when valid).
    """
    if not isinstance(text, str):
        return [], f"expected text, got {type(text).__name__}"
    line = next((line for line in text.splitlines() if line.strip()), "").strip()
    types = {kind.casefold(): kind for kind in span_types(task)}
    spans: list[tuple[int, int, str]] = []
    count, at, problem = 0, 0, "" if line else "empty output"
    for match in _SPAN.finditer(line):
        count += len(line[at : match.start()].split())
        inside = match.group(2).split()
        kind = types.get(match.group(1).strip().casefold())
        if kind is None and not problem:
            problem = f"unknown span type {match.group(1).strip()!r}"
        if kind is not None and inside:
            spans.append((count, count + len(inside), kind))
        count += len(inside)
        at = match.end()
    count += len(line[at:].split())
    if not problem and num_words is not None and count != num_words:
        problem = f"{count} words for {num_words}"
    return word_labels_of(task, count, spans), problem
