"""Answer syntax of the decoder family: how gold labels are written as text, and how generations are read back.

A task's *value* has one syntax per task kind, the same in every answer:

* sequence task (``topic20``, ``intent``): the label itself, e.g. ``rec.autos`` (a JSON string inside a JSON
  object);
* token task (``slots``): a JSON list of strings, one label per whitespace word of the input, e.g.
  ``["Other", "Other", "time", "time"]``. The paper asks for "the slots list" (Listings 9-12) without
  printing its syntax; a JSON list is the one syntax that is also valid inside the multi-task JSON object.
  With ``token_format="inline"`` (not the paper's; :mod:`lit_clf.prompting.inline`) it is instead the input with
  each span in brackets, ``wake me up at [time : five am]`` (a JSON string inside a JSON object);
* multi-label task: a JSON list of the labels that apply, each once, in the order of the task's label list
  (``["anger", "joy"]``; ``[]`` when none applies).

The answer around the values has one of two *styles* (the two prompt styles of Yu et al., "Open, Closed, or Small
Language Models for Text Classification?"):

* ``serial``: plain text. One task: its value alone. Several tasks: one line per task, ``name: value``;
* ``json``: one JSON object, one field per task under the keys the prompt names
  (``{"task1": "alarm_set", "task2": ["Other", "time"]}``, the paper's consolidated prompts).

Unset, the style is the paper's: ``serial`` for one task, ``json`` for several. Lists are JSON in both styles, so
one parser reads a value wherever it stands. The end-of-sequence token is not part of the text: the prompt
encoder appends it as a token id.

The parsers never raise. Each returns a :class:`ParsedAnswer` per task: a best-effort ``value`` and a
``valid`` flag, which is what the invalid-output rate counts. They are tolerant of what fine-tuned and
zero-shot models emit (surrounding whitespace, quotes, a repeated ``Label:`` cue, wrong case, text after
the answer, single-quoted or trailing-comma JSON) but flag anything that names no known label.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from lit_clf.data.tasks import OTHER, Example, TaskSpec
from lit_clf.prompting.inline import check_token_format, parse_inline, render_inline

__all__ = [
    "STYLES",
    "AnswerStyle",
    "ParsedAnswer",
    "answer_keys",
    "answer_layout",
    "answer_style",
    "default_keys",
    "parse_answer",
    "parse_json_answer",
    "parse_label",
    "parse_label_list",
    "parse_serial_answer",
    "parse_value",
    "parse_word_labels",
    "render_answer",
    "render_answer_parts",
    "render_value",
    "render_word_labels",
]

#: Answer styles: plain text (``serial``) or one JSON object (``json``).
AnswerStyle = Literal["serial", "json"]
STYLES: tuple[str, ...] = get_args(AnswerStyle)

# Longer outputs are cut before parsing: generations are bounded by max_new_tokens anyway, and this keeps
# ast.literal_eval and the scans linear and cheap on adversarial input.
_MAX_CHARS = 20_000
_QUOTES = "\"'`\u2018\u2019\u201c\u201d"
# A cue the model may repeat before its answer ("Label: rec.autos"); the prompts end with these words.
_CUE = re.compile(r"^\s*(?:labels?|outputs?|slots?|answer)\s*:\s*", re.IGNORECASE)
# What may follow a label that is followed by more text: end, space, a closing quote/bracket, punctuation that
# ends the word ("rec.autos." / "rec.autos, because") or a special token's "<"; never the middle of a longer
# name ("rec.autos" is not the label "rec").
_LABEL_END = r"(?=$|\s|[\"'`\u2019\u201d\])},;:!?<]|\.(?:\s|$))"


@dataclass(frozen=True)
class ParsedAnswer:
    """One task's prediction read from a generation.

    Attributes:
        value: Best-effort prediction. Sequence task: a label of the task (canonical spelling) or None when
            no label could be recognised. Multi-label task: the known labels found, each once, in the label
            list's order. Token task: a list of labels of the task, one per label the model
            wrote, unknown ones replaced by ``Other``; its length is the model's, not padded or truncated to
            the number of words (the slot metrics align it, MASSIVE-style).
        valid: True when the output followed the answer syntax, every label is known and, for a token task,
            there is exactly one label per word.
        reason: Empty when valid; otherwise the first problem found, for logs (``unknown label 'foo'``).
    """

    value: str | list[str] | None
    valid: bool
    reason: str = ""


# ---------------------------------------------------------------------------------------------------------------------
# Rendering gold answers


def default_keys(num_tasks: int) -> tuple[str, ...]:
    """JSON keys of the consolidated prompts: ``task1``, ``task2``, ... in task order (Listings 5, 6, 11, 12)."""
    return tuple(f"task{i}" for i in range(1, num_tasks + 1))


def answer_style(tasks: Sequence[TaskSpec], style: str | None = None) -> str:
    """``style`` checked, or the paper's when unset: ``serial`` for one task, ``json`` for several."""
    if style is None:
        return "json" if len(tasks) > 1 else "serial"
    if style not in STYLES:
        raise ValueError(f"answer style: expected one of {', '.join(STYLES)}, got {style!r}")
    return style


def answer_keys(tasks: Sequence[TaskSpec], keys: Sequence[str] | None = None) -> tuple[str, ...]:
    """The JSON key of each task: ``keys``, or :func:`default_keys`."""
    keys = tuple(keys) if keys else default_keys(len(tasks))
    if len(keys) != len(tasks):
        raise ValueError(f"keys: expected one JSON key per task ({len(tasks)}), got {list(keys)}")
    return keys


def answer_layout(
    tasks: Sequence[TaskSpec], keys: Sequence[str] | None = None, style: str | None = None
) -> list[str | TaskSpec]:
    """The answer as literal text and task values, in order: ``['{"task1": ', intent, ', "task2": ', slots, '}']``.

    Joining the literals with each task's :func:`render_value` gives :func:`render_answer`; constrained decoding
    builds its automaton from the same layout.
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError("answer: give at least one task")
    if answer_style(tasks, style) == "serial":
        if len(tasks) == 1:
            return [tasks[0]]
        layout: list[str | TaskSpec] = []
        for i, task in enumerate(tasks):
            layout += [("\n" if i else "") + f"{task.name}: ", task]
        return layout
    layout = []
    for i, (task, key) in enumerate(zip(tasks, answer_keys(tasks, keys))):
        layout += [("{" if i == 0 else ", ") + json.dumps(key, ensure_ascii=False) + ": ", task]
    return [*layout, "}"]


def render_value(
    task: TaskSpec,
    value: str | Sequence[str],
    quoted: bool = False,
    token_format: str = "labels",
    words: Sequence[str] | None = None,
) -> str:
    """One task's value: a label (a JSON string when ``quoted``, inside a JSON object) or a JSON list of labels;
    with ``token_format="inline"``, a token task's ``words`` with its spans in brackets (a JSON string when
    ``quoted``)."""
    if task.kind == "sequence":
        return json.dumps(value, ensure_ascii=False) if quoted else value
    if task.kind == "token" and check_token_format(token_format) == "inline":
        if words is None:
            raise ValueError(f"task {task.name!r}: an inline answer needs the input's words")
        text = render_inline(task, words, value)
        return json.dumps(text, ensure_ascii=False) if quoted else text
    return render_word_labels(value)


def render_word_labels(labels: Sequence[str]) -> str:
    """A list value: ``["Other", "time"]`` (JSON list, ``", "`` separators, non-ASCII kept)."""
    return json.dumps(list(labels), ensure_ascii=False)


def render_answer(
    example: Example,
    tasks: Sequence[TaskSpec],
    keys: Sequence[str] | None = None,
    style: str | None = None,
    token_format: str = "labels",
) -> str:
    """The gold answer text of ``example`` for ``tasks`` (without end-of-sequence token).

    Args:
        example: The example whose ``labels`` are written.
        tasks: The tasks, in answer order.
        keys: JSON key per task (``json`` style); default :func:`default_keys`.
        style: ``serial`` or ``json``; unset: ``serial`` for one task, ``json`` for several.
        token_format: How token tasks answer: ``labels`` (the paper's list) or ``inline``.

    Returns:
        ``rec.autos``, ``["Other", "time"]``, ``intent: alarm_set\nslots: ["Other", "time"]`` or
        ``{"task1": "alarm_set", "task2": ["Other", "time"]}``.
    """
    return render_answer_parts(example, tasks, keys, style, token_format)[0]


def render_answer_parts(
    example: Example,
    tasks: Sequence[TaskSpec],
    keys: Sequence[str] | None = None,
    style: str | None = None,
    token_format: str = "labels",
) -> tuple[str, list[int]]:
    """:func:`render_answer`'s text and, per task (in answer order), the character offset where its value ends:
    ``('{"task1": "alarm_set", "task2": ["Other"]}', [21, 42])``. The text up to the first offset is the first
    task's part of the answer, and so on; the literal text after the last value belongs to the last task."""
    quoted = answer_style(tasks, style) == "json"
    words = example.words
    text, ends = "", []
    for piece in answer_layout(tasks, keys, style):
        if isinstance(piece, str):
            text += piece
        else:
            text += render_value(piece, _gold_value(example, piece), quoted, token_format, words)
            ends.append(len(text))
    return text, ends


def _gold_value(example: Example, task: TaskSpec) -> str | list[str]:
    value = example.labels[task.name]
    if task.kind == "multilabel":  # a set: each label once, in the label list's order
        chosen = set(value)
        return [label for label in task.labels if label in chosen]
    return value if task.kind == "sequence" else list(value)


# ---------------------------------------------------------------------------------------------------------------------
# Parsing generations


def parse_answer(
    text: str,
    tasks: Sequence[TaskSpec],
    keys: Sequence[str] | None = None,
    num_words: int | None = None,
    style: str | None = None,
    token_format: str = "labels",
) -> dict[str, ParsedAnswer]:
    """Read a generation written in the syntax :func:`render_answer` produces for ``tasks``. Never raises.

    Args:
        text: The decoded generation (special tokens removed).
        tasks: The tasks the prompt asked for, in answer order.
        keys: JSON key per task (``json`` style); default :func:`default_keys`.
        num_words: Number of whitespace words of the input, to check token-task answers; None skips the check.
        style: ``serial`` or ``json``; unset: ``serial`` for one task, ``json`` for several.
        token_format: How token tasks answer: ``labels`` (the paper's list) or ``inline``.

    Returns:
        Task name -> :class:`ParsedAnswer`, for every task in ``tasks``.
    """
    style = answer_style(tasks, style)
    if style == "json":
        return parse_json_answer(text, tasks, keys, num_words, token_format)
    if len(tasks) > 1:
        return parse_serial_answer(text, tasks, num_words, token_format)
    return {tasks[0].name: parse_value(text, tasks[0], num_words, token_format)}


def parse_value(text: str, task: TaskSpec, num_words: int | None = None, token_format: str = "labels") -> ParsedAnswer:
    """Read one task's value (a label, a JSON list of labels, or an inline answer) from ``text``. Never raises."""
    if task.kind == "sequence":
        return parse_label(text, task.labels)
    if task.kind == "multilabel":
        return parse_label_list(text, task.labels)
    if token_format == "inline":
        if not isinstance(text, str):
            return ParsedAnswer([], False, f"expected text, got {type(text).__name__}")
        labels, problem = parse_inline(_CUE.sub("", text[:_MAX_CHARS].strip(), count=1), task, num_words)
        return ParsedAnswer(labels, not problem, problem)
    return parse_word_labels(text, task.labels, num_words, task.outside)


def parse_serial_answer(
    text: str, tasks: Sequence[TaskSpec], num_words: int | None = None, token_format: str = "labels"
) -> dict[str, ParsedAnswer]:
    """Read a ``serial`` answer of several tasks: one ``name: value`` line per task, in any order. Never raises.

    A task's line is the first whose text before the first colon is the task's name (case, quotes and list
    markers ignored); its value is read like a single-task answer. A missing line makes that task invalid.
    """
    if not isinstance(text, str):
        return {task.name: _missing(task, f"expected text, got {type(text).__name__}") for task in tasks}
    lines = {}
    for line in text[:_MAX_CHARS].splitlines():
        name, colon, value = line.partition(":")
        name = _strip_wrapping(name.strip().lstrip("-*# ")).casefold()
        if colon and name not in lines:
            lines[name] = value
    results = {}
    for task in tasks:
        value = lines.get(task.name.casefold())
        results[task.name] = (
            _missing(task, f"no line {task.name}: ...")
            if value is None
            else parse_value(value, task, num_words, token_format)
        )
    return results


def parse_label(text: str, labels: Sequence[str]) -> ParsedAnswer:
    """Read one label from the first non-empty line of ``text``. Never raises.

    Surrounding whitespace, quotes, brackets and trailing punctuation are dropped, a leading ``Label:`` cue is
    skipped, and case is ignored. A known label followed by more text (``rec.autos\\n\\nExplanation: ...`` or
    ``rec.autos because ...``) counts as that label; a label must be followed by a word end, so ``rec.autos``
    is not the 7-class label ``rec``.

    Args:
        text: The generation.
        labels: The task's label set.

    Returns:
        ``ParsedAnswer(label, True)`` or ``ParsedAnswer(None, False, reason)``.
    """
    if not isinstance(text, str):
        return ParsedAnswer(None, False, f"expected text, got {type(text).__name__}")
    line = _strip_wrapping(_first_line(text))
    if not line:
        return ParsedAnswer(None, False, "empty output")
    canonical = _canonical_labels(labels)
    if line.casefold() in canonical:
        return ParsedAnswer(canonical[line.casefold()], True)
    for label in sorted(labels, key=len, reverse=True):
        if re.match(re.escape(label) + _LABEL_END, line, re.IGNORECASE):
            return ParsedAnswer(label, True)
    return ParsedAnswer(None, False, f"unknown label {_preview(line)}")


def parse_word_labels(
    text: str, labels: Sequence[str], num_words: int | None = None, outside: str = OTHER
) -> ParsedAnswer:
    """Read a list of word labels (``["Other", "time"]``; single quotes and a trailing comma accepted). Never raises.

    Without brackets, or when the list does not parse, the quoted strings (or, with no quotes, the comma- or
    space-separated words) are read as a best-effort value and the answer is invalid.

    Args:
        text: The generation.
        labels: The task's word-label set (``Other`` included, as :func:`~lit_clf.data.tasks.collect_labels`
            builds it).
        num_words: Number of words the list must have; None skips the check.
        outside: The task's outside label (``TaskSpec.outside``), read in place of an unknown label.

    Returns:
        :class:`ParsedAnswer` with a list value; invalid on a syntax problem, an unknown label or a wrong count.
    """
    if not isinstance(text, str):
        return ParsedAnswer([], False, f"expected text, got {type(text).__name__}")
    items, problem = _read_list(_CUE.sub("", text[:_MAX_CHARS].strip(), count=1))
    return _check_word_labels(items, labels, num_words, problem, outside)


def parse_label_list(text: str, labels: Sequence[str]) -> ParsedAnswer:
    """Read a multi-label value (``["anger", "joy"]``, ``[]``; single quotes and a trailing comma accepted). Never
    raises.

    Without brackets, or when the list does not parse, the quoted strings (or the comma-separated words) are read
    as a best-effort value and the answer is invalid. A label written twice counts once.

    Args:
        text: The generation.
        labels: The task's label set.

    Returns:
        :class:`ParsedAnswer` whose value lists the labels found in the label set's order; invalid on a syntax
        problem or an unknown label (which is left out of the value).
    """
    if not isinstance(text, str):
        return ParsedAnswer([], False, f"expected text, got {type(text).__name__}")
    items, problem = _read_list(_CUE.sub("", text[:_MAX_CHARS].strip(), count=1))
    return _check_label_set(items, labels, problem)


def parse_json_answer(
    text: str,
    tasks: Sequence[TaskSpec],
    keys: Sequence[str] | None = None,
    num_words: int | None = None,
    token_format: str = "labels",
) -> dict[str, ParsedAnswer]:
    """Read the consolidated prompts' JSON object, one field per task. Never raises.

    The first ``{...}`` object in ``text`` is read (text around it is ignored); single quotes and trailing
    commas are accepted, and a key is found case-insensitively or under the task's own name. Each field is
    then read like a single-task answer (a label string; a list, or a string holding a list, of word labels).
    A missing field makes that task invalid. When the object itself does not parse (e.g. a generation cut
    off by ``max_new_tokens``), each field is still looked up for a best-effort value, flagged invalid.

    Args:
        text: The generation.
        tasks: The tasks, in the order of ``keys``.
        keys: JSON key per task; default :func:`default_keys`.
        num_words: Number of input words, for token tasks; None skips the check.
        token_format: How token tasks answer: ``labels`` (a list) or ``inline`` (a string).

    Returns:
        Task name -> :class:`ParsedAnswer`, for every task.
    """
    keys = tuple(keys) if keys else default_keys(len(tasks))
    if not isinstance(text, str):
        return {task.name: _missing(task, f"expected text, got {type(text).__name__}") for task in tasks}
    obj, span, problem = _read_object(text[:_MAX_CHARS])
    results = {}
    for task, key in zip(tasks, keys):
        if obj is not None:
            found, raw = _lookup(obj, key, task.name)
        else:
            found, raw = _find_field(span, key, task.name)
        parsed = (
            _field_value(raw, task, num_words, token_format)
            if found
            else _missing(task, problem or f"missing field {key!r}")
        )
        results[task.name] = replace(parsed, valid=False, reason=problem) if problem and parsed.valid else parsed
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Helpers: labels


def _canonical_labels(labels: Sequence[str]) -> dict[str, str]:
    """casefolded label -> label; an exact spelling wins over another label's casefold."""
    canonical = {label.casefold(): label for label in labels}
    canonical.update({label: label for label in labels})
    return canonical


def _first_line(text: str) -> str:
    text = _CUE.sub("", text[:_MAX_CHARS].strip(), count=1)
    return next((line for line in text.splitlines() if line.strip()), "")


def _strip_wrapping(line: str) -> str:
    """Drop whitespace, quotes, brackets and trailing sentence punctuation around a label until stable."""
    previous = None
    while line != previous:
        previous = line
        line = line.strip().strip(_QUOTES + "[](){}<>*").rstrip(".,;:!?")
    return line


def _preview(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _check_word_labels(
    items: list[Any], labels: Sequence[str], num_words: int | None, problem: str, outside: str = OTHER
) -> ParsedAnswer:
    """Map items to canonical labels (unknown -> ``outside``) and decide validity; ``problem`` is a syntax issue."""
    canonical = _canonical_labels(labels)
    value, unknown = [], []
    for item in items:
        word = item.strip() if isinstance(item, str) else item
        label = canonical.get(word.casefold()) if isinstance(word, str) else None
        if label is None:
            unknown.append(word)
        value.append(outside if label is None else label)
    if not problem and unknown:
        problem = f"unknown label {_preview(unknown[0])}"
    if not problem and num_words is not None and len(value) != num_words:
        problem = f"{len(value)} labels for {num_words} words"
    return ParsedAnswer(value, not problem, problem)


def _check_label_set(items: list[Any], labels: Sequence[str], problem: str) -> ParsedAnswer:
    """The known labels among ``items`` (each once, in ``labels`` order) and validity; ``problem``: a syntax issue."""
    canonical = _canonical_labels(labels)
    found = {canonical.get(item.strip().casefold()) if isinstance(item, str) else None: item for item in items}
    unknown = found.pop(None, None)
    if not problem and unknown is not None:
        problem = f"unknown label {_preview(unknown)}"
    return ParsedAnswer([label for label in labels if label in found], not problem, problem)


def _missing(task: TaskSpec, reason: str) -> ParsedAnswer:
    return ParsedAnswer(None if task.kind == "sequence" else [], False, reason)


def _field_value(raw: Any, task: TaskSpec, num_words: int | None, token_format: str = "labels") -> ParsedAnswer:
    """Read one JSON field as ``task``'s answer."""
    if task.kind == "sequence":
        if isinstance(raw, str):
            return parse_label(raw, task.labels)
        return ParsedAnswer(None, False, f"expected a label string, got {_preview(raw)}")
    if task.kind == "token" and token_format == "inline" and not isinstance(raw, str):
        return ParsedAnswer([], False, f"expected an inline answer string, got {_preview(raw)}")
    if isinstance(raw, list | tuple):
        if task.kind == "multilabel":
            return _check_label_set(list(raw), task.labels, "")
        return _check_word_labels(list(raw), task.labels, num_words, "", task.outside)
    if isinstance(raw, str):
        return parse_value(raw, task, num_words, token_format)
    return ParsedAnswer([], False, f"expected a list of labels, got {_preview(raw)}")


# ---------------------------------------------------------------------------------------------------------------------
# Helpers: lists and objects in free text


def _read_list(text: str) -> tuple[list[Any], str]:
    """Items of the first ``[...]`` in ``text`` and a syntax problem ("" when it parsed as a list)."""
    if not text:
        return [], "empty output"
    start = text.find("[")
    if start < 0:
        return _loose_items(text), "not a list"
    end = _closing(text, start)
    span = text[start:] if end is None else text[start : end + 1]
    value = _literal(span) if end is not None else None
    if isinstance(value, list | tuple):
        return list(value), ""
    return _loose_items(span.strip("[]")), "unterminated list" if end is None else "malformed list"


def _loose_items(text: str) -> list[str]:
    quoted = re.findall(r"\"([^\"]*)\"|'([^']*)'", text)
    if quoted:
        return [a or b for a, b in quoted]
    return [item for item in re.split(r"[\s,]+", text) if item.strip(_QUOTES)]


def _read_object(text: str) -> tuple[dict[str, Any] | None, str, str]:
    """``(object or None, the text to search fields in, syntax problem)`` for the first ``{...}`` in ``text``."""
    start = text.find("{")
    if start < 0:
        return None, text, "no JSON object"
    end = _closing(text, start)
    if end is None:
        return None, text[start:], "unterminated JSON object"
    value = _literal(text[start : end + 1])
    if isinstance(value, dict):
        return value, text[start : end + 1], ""
    return None, text[start : end + 1], "malformed JSON object"


def _closing(text: str, start: int) -> int | None:
    """Index of the bracket closing ``text[start]`` (``[`` or ``{``), skipping quoted strings; None if none."""
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _literal(span: str) -> Any:
    """JSON, else JSON without trailing commas, else a Python literal (single quotes); None if none parses."""
    for attempt in (span, re.sub(r",\s*([}\]])", r"\1", span)):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning on "\d" escapes in the model's strings
            return ast.literal_eval(span)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _lookup(obj: Mapping[str, Any], key: str, task_name: str) -> tuple[bool, Any]:
    """Field ``key`` of ``obj``: exact, case-insensitive, or under the task's name."""
    if key in obj:
        return True, obj[key]
    folded = {str(k).casefold(): v for k, v in obj.items()}
    for name in (key.casefold(), task_name.casefold()):
        if name in folded:
            return True, folded[name]
    return False, None


def _find_field(text: str, key: str, task_name: str) -> tuple[bool, Any]:
    """Best-effort raw value of ``"key": value`` in text that is not a parseable object."""
    for name in (key, task_name):
        match = re.search(r"[\"']" + re.escape(name) + r"[\"']\s*:\s*", text, re.IGNORECASE)
        if match:
            rest = text[match.end() :]
            if rest.startswith("["):
                end = _closing(rest, 0)
                return True, rest if end is None else rest[: end + 1]
            quoted = re.match(r"\"([^\"]*)\"|'([^']*)'", rest)
            return True, (quoted.group(1) or quoted.group(2) or "") if quoted else re.split(r"[,}\n]", rest)[0]
    return False, None
