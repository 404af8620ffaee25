"""Answer syntax of the decoder family: how gold labels are written as text, and how generations are read back.

One syntax per task kind, the same in single- and multi-task prompts:

* sequence task (``topic20``, ``topic7``, ``intent``): the label itself, e.g. ``rec.autos``;
* token task (``slots``): a JSON list of strings, one label per whitespace word of the input, e.g.
  ``["Other", "Other", "time", "time"]``. The paper asks for "the slots list" (Listings 9-12) without
  printing its syntax; a JSON list is the one syntax that is also valid inside the multi-task JSON object;
* several tasks: the JSON object of the paper's consolidated prompts, one field per task under the keys the
  prompt names (``{"task1": "alarm_set", "task2": ["Other", "time"]}``).

The end-of-sequence token is not part of the text: :mod:`lit_clf.decoder.prompts` appends it as a token id.

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
from typing import Any

from lit_clf.data.tasks import OTHER, Example, TaskSpec

__all__ = [
    "ParsedAnswer",
    "default_keys",
    "parse_answer",
    "parse_json_answer",
    "parse_label",
    "parse_word_labels",
    "render_answer",
    "render_word_labels",
]

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
            no label could be recognised. Token task: a list of labels of the task, one per label the model
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


def render_word_labels(labels: Sequence[str]) -> str:
    """A token task's answer: ``["Other", "time"]`` (JSON list, ``", "`` separators, non-ASCII kept)."""
    return json.dumps(list(labels), ensure_ascii=False)


def render_answer(example: Example, tasks: Sequence[TaskSpec], keys: Sequence[str] | None = None) -> str:
    """The gold answer text of ``example`` for ``tasks`` (without end-of-sequence token).

    Args:
        example: The example whose ``labels`` are written.
        tasks: One task (bare answer) or several (JSON object, fields in task order).
        keys: JSON key per task for several tasks; default :func:`default_keys`.

    Returns:
        ``rec.autos``, ``["Other", "time"]`` or ``{"task1": "alarm_set", "task2": ["Other", "time"]}``.
    """
    values = [_gold_value(example, task) for task in tasks]
    if len(tasks) == 1:
        return values[0] if isinstance(values[0], str) else render_word_labels(values[0])
    keys = tuple(keys) if keys is not None else default_keys(len(tasks))
    if len(keys) != len(tasks):
        raise ValueError(f"keys: expected one JSON key per task ({len(tasks)}), got {list(keys)}")
    return json.dumps(dict(zip(keys, values)), ensure_ascii=False)


def _gold_value(example: Example, task: TaskSpec) -> str | list[str]:
    value = example.labels[task.name]
    return value if task.kind == "sequence" else list(value)


# ---------------------------------------------------------------------------------------------------------------------
# Parsing generations


def parse_answer(
    text: str, tasks: Sequence[TaskSpec], keys: Sequence[str] | None = None, num_words: int | None = None
) -> dict[str, ParsedAnswer]:
    """Read a generation written in the syntax :func:`render_answer` produces for ``tasks``. Never raises.

    Args:
        text: The decoded generation (special tokens removed).
        tasks: The tasks the prompt asked for; several means the JSON object syntax.
        keys: JSON key per task for several tasks; default :func:`default_keys`.
        num_words: Number of whitespace words of the input, to check token-task answers; None skips the check.

    Returns:
        Task name -> :class:`ParsedAnswer`, for every task in ``tasks``.
    """
    if len(tasks) > 1:
        return parse_json_answer(text, tasks, keys, num_words)
    task = tasks[0]
    if task.kind == "sequence":
        return {task.name: parse_label(text, task.labels)}
    return {task.name: parse_word_labels(text, task.labels, num_words, task.outside)}


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


def parse_json_answer(
    text: str, tasks: Sequence[TaskSpec], keys: Sequence[str] | None = None, num_words: int | None = None
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

    Returns:
        Task name -> :class:`ParsedAnswer`, for every task.
    """
    keys = tuple(keys) if keys is not None else default_keys(len(tasks))
    if not isinstance(text, str):
        return {task.name: _missing(task, f"expected text, got {type(text).__name__}") for task in tasks}
    obj, span, problem = _read_object(text[:_MAX_CHARS])
    results = {}
    for task, key in zip(tasks, keys):
        if obj is not None:
            found, raw = _lookup(obj, key, task.name)
        else:
            found, raw = _find_field(span, key, task.name)
        parsed = _field_value(raw, task, num_words) if found else _missing(task, problem or f"missing field {key!r}")
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


def _missing(task: TaskSpec, reason: str) -> ParsedAnswer:
    return ParsedAnswer(None if task.kind == "sequence" else [], False, reason)


def _field_value(raw: Any, task: TaskSpec, num_words: int | None) -> ParsedAnswer:
    """Read one JSON field as ``task``'s answer."""
    if task.kind == "sequence":
        if isinstance(raw, str):
            return parse_label(raw, task.labels)
        return ParsedAnswer(None, False, f"expected a label string, got {_preview(raw)}")
    if isinstance(raw, list | tuple):
        return _check_word_labels(list(raw), task.labels, num_words, "", task.outside)
    if isinstance(raw, str):
        return parse_word_labels(raw, task.labels, num_words, task.outside)
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
