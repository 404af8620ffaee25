"""Prompt templates: the paper's (Listings 1-12, stored as data files in ``paper_prompts/``) and user files.

Placeholder syntax of templates (``str.format`` fields; write literal braces as ``{{`` and ``}}``):

* ``{text}``: the query text (required);
* ``{examples}``: the few-shot block (required when ``shots > 0``, not allowed otherwise);
* ``{labels_<task>}``: the task's label list as a Python list, ``['alt.atheism', 'comp.graphics']``;
  ``{labels_<task>:json}`` writes a JSON list, ``["alt", "comp"]``. A token task's list leaves out ``Other``,
  which the slot prompts name on their own;
* ``{other}``: the word label for words outside every slot (``Other``).

One few-shot example is written with the template's ``shot`` pattern (fields ``{text}`` and ``{answer}``);
examples are separated by a blank line. A template file is YAML/JSON with ``prompt`` (required) and optional
``system``, ``shot``, ``keys``, ``style``, ``token_format`` and ``variant``, or plain text (the prompt itself);
the paper's files in ``paper_prompts/`` are examples of the format.

The paper's prompts (appendix Listings 1-12) keep its wording except for these fixes:

* "classifity" -> "classify" (Listings 7, 8) and "Bellow" -> "Below" (Listings 3, 4, 6, 8, 10, 12);
* label lists are rendered from TaskSpec.labels, which also repairs the lists' lost quotes
  (’alt.atheism’, comp.graphics’ ... in Listings 1, 3, 5, 6; ..., talk"] in Listings 2, 4, 5, 6). The 20-class
  list keeps the paper's Python-list style ['a', 'b'], the 7-class list its JSON style ["a", "b"]; for the
  MASSIVE lists, printed as a {Labels} variable, the Python style of Listing 1 is assumed;
* "{{Examples}}" (Listings 3, 4), which str.format would print literally, is the {examples} field;
* the wrapper ("[INST]", "[/INST]" in Listings 1, 3, 5, 6 only), the leading newline and the trailing
  "{Label}" are left out: the prompt format adds the wrapper and the answer;
* the literal "Other" of the slot prompts is the {other} field (tasks.OTHER), so it is stated once;
* Listing 12's query prompt is cut off after "End of <<Utter>>" in the paper; its last line "Output:" is
  Listing 11's. Listing 9 is printed twice; it is one template;
* Listings 11 and 12 split the prompt into a system and a query prompt; the system prompt's trailing newline
  is dropped (the raw format joins the two with a newline, as Listing 5, their 20NG twin, has them).

Kept as printed: "a two json fields", "each of the word", "utter text", "Output the Slots only", the missing
period after the 20NG label lists and the double blank line of Listing 5.
The paper does not show how one few-shot example is written; each mirrors the query block and its answer cue.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lit_clf.data.tasks import OTHER, TaskSpec
from lit_clf.prompting.answers import STYLES, default_keys
from lit_clf.prompting.inline import check_token_format

#: Folder of the paper's prompts, one template file per listing.
PAPER_PROMPTS = Path(__file__).parent / "paper_prompts"

#: ``(dataset, task names in answer order, shots)`` -> listing number of the paper; the file is
#: ``paper_prompts/<dataset>-<task1>+<task2>-<shots>shot.yaml``.
PAPER_LISTINGS: dict[tuple[str, tuple[str, ...], int], int] = {
    ("newsgroups", ("topic20",), 0): 1,
    ("newsgroups", ("topic7",), 0): 2,
    ("newsgroups", ("topic20",), 5): 3,
    ("newsgroups", ("topic7",), 5): 4,
    ("newsgroups", ("topic7", "topic20"), 0): 5,
    ("newsgroups", ("topic7", "topic20"), 5): 6,
    ("massive", ("intent",), 0): 7,
    ("massive", ("intent",), 5): 8,
    ("massive", ("slots",), 0): 9,
    ("massive", ("slots",), 5): 10,
    ("massive", ("intent", "slots"), 0): 11,
    ("massive", ("intent", "slots"), 5): 12,
}

_LABEL_SPECS = ("", "py", "json")


class _LabelList:
    """A label list that formats as a Python list (``{labels_x}``, ``{labels_x:py}``) or JSON (``:json``)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def __format__(self, spec: str) -> str:
        if spec == "json":
            return json.dumps(self.labels, ensure_ascii=False)
        if spec in ("", "py"):
            return str(self.labels)
        raise ValueError(f"unknown label list format {spec!r} (use json or py)")


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt with ``str.format`` placeholders (see the module docstring for the fields).

    Attributes:
        tasks: Task names in answer order; with several, task ``i`` answers under ``keys[i]``.
        shots: Number of few-shot examples filled into ``{examples}``.
        prompt: The user turn.
        system: Optional system prompt (Listings 11-12); same placeholders as ``prompt``.
        shot: Pattern of one few-shot example, with ``{text}`` and ``{answer}``.
        keys: JSON key per task of a ``json`` answer; default ``task1``, ``task2``, ...
        source: Where the template comes from (``Listing 7`` or a file path), named in errors.
        style: The answer style (:mod:`lit_clf.prompting.answers`): ``serial`` (plain text; several tasks: one
            ``name: value`` line each) or ``json`` (one JSON object under ``keys``). Unset: ``json`` for several
            tasks or when ``keys`` are given, else ``serial``.
        token_format: How a token task answers: ``labels`` (the paper's list, one label per word) or ``inline``
            (the input with each span in brackets, ``wake me up at [time : five am]``; :mod:`lit_clf.prompting.inline`).
        variant: What the report calls runs with this prompt (their row's variant, e.g. ``inline slot answer``):
            prompts that give the same variant share a row; unset, ``prompt <file name>``
            (:mod:`lit_clf.report.runs`, which reads it from the file without loading the template).
    """

    tasks: tuple[str, ...]
    shots: int
    prompt: str
    system: str | None = None
    shot: str = "Text: {text}\nAnswer: {answer}"
    keys: tuple[str, ...] = ()
    source: str = "template"
    style: str | None = None
    token_format: str = "labels"
    variant: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        check_token_format(self.token_format, f"{self.source}: token_format")
        style = self.style or ("json" if len(self.tasks) > 1 or self.keys else "serial")
        if style not in STYLES:
            raise ValueError(f"{self.source}: style: expected one of {', '.join(STYLES)}, got {style!r}")
        if style == "serial" and self.keys:
            raise ValueError(f"{self.source}: keys name the fields of a json answer; the style is serial")
        object.__setattr__(self, "style", style)
        keys = tuple(self.keys) or (default_keys(len(self.tasks)) if style == "json" else ())
        object.__setattr__(self, "keys", keys)
        self._check()

    def render(
        self, specs: Sequence[TaskSpec], text: str, examples: Sequence[tuple[str, str]] = ()
    ) -> tuple[str | None, str]:
        """Fill the template.

        Args:
            specs: Specs of (at least) the template's tasks, for the label lists.
            text: The query text.
            examples: ``(text, answer)`` per few-shot example.

        Returns:
            ``(system prompt or None, user prompt)``.
        """
        values = self._values(specs, text, examples)
        system = self.system.format(**values) if self.system is not None else None
        return system, self.prompt.format(**values)

    def _values(self, specs: Sequence[TaskSpec], text: str, examples: Sequence[tuple[str, str]]) -> dict[str, Any]:
        by_name = {spec.name: spec for spec in specs}
        missing = [name for name in self.tasks if name not in by_name]
        if missing:
            raise ValueError(f"{self.source}: no task spec for {missing[0]!r}")
        token = next((by_name[name] for name in self.tasks if by_name[name].kind == "token"), None)
        values: dict[str, Any] = {"text": text, "other": token.outside if token is not None else OTHER}
        values["examples"] = "\n\n".join(self.shot.format(text=t, answer=a) for t, a in examples)
        for name in self.tasks:
            spec = by_name[name]
            labels = [label for label in spec.labels if spec.kind == "sequence" or label != spec.outside]
            values[f"labels_{name}"] = _LabelList(labels)
        return values

    def _check(self) -> None:
        """Raise a one-line ValueError naming ``source`` for a placeholder the template cannot fill."""
        allowed = {"text", "examples", "other"} | {f"labels_{name}" for name in self.tasks}
        fields = _fields(self.prompt, self.source) | _fields(self.system or "", self.source)
        for name, spec in sorted(fields):
            if name not in allowed:
                known = ", ".join("{" + a + "}" for a in sorted(allowed))
                raise ValueError(f"{self.source}: unknown placeholder {{{name}}}; known: {known}")
            if spec not in (_LABEL_SPECS if name.startswith("labels_") else ("",)):
                raise ValueError(f"{self.source}: placeholder {{{name}:{spec}}} has an unknown format {spec!r}")
        names = {name for name, _ in fields}
        if "text" not in names:
            raise ValueError(f"{self.source}: the prompt has no {{text}} placeholder")
        if (self.shots > 0) != ("examples" in names):
            raise ValueError(f"{self.source}: shots={self.shots} needs {{examples}} exactly when shots > 0")
        if self.shots > 0 and _fields(self.shot, self.source) != {("text", ""), ("answer", "")}:
            raise ValueError(f"{self.source}: the shot pattern must use exactly {{text}} and {{answer}}")
        if self.style == "json" and len(self.keys) != len(self.tasks):
            raise ValueError(f"{self.source}: {len(self.tasks)} tasks need {len(self.tasks)} keys, got {self.keys}")


def _fields(template: str, source: str) -> set[tuple[str, str]]:
    """``(field name, format spec)`` of every placeholder in ``template``; conversions (``!r``) are refused."""
    try:
        parsed = [(name, spec or "", conv) for _, name, spec, conv in string.Formatter().parse(template)]
    except ValueError as err:
        raise ValueError(f"{source}: malformed template ({err}; write literal braces as {{{{ and }}}})") from None
    for name, _, conversion in parsed:
        if conversion is not None:
            raise ValueError(f"{source}: placeholder {{{name}!{conversion}}}: conversions are not supported")
    return {(name, spec) for name, spec, _ in parsed if name is not None}


def paper_key(tasks: Sequence[str], shots: int, dataset: str | None = None) -> tuple[str, tuple[str, ...], int] | None:
    """The :data:`PAPER_LISTINGS` key of the paper's prompt for these tasks (any order) and shots, or None.

    ``dataset`` (a DataModule's ``dataset_name``) must match when given; unset, the tasks alone decide.
    """
    for key in PAPER_LISTINGS:
        name, names, count = key
        if count == shots and sorted(names) == sorted(tasks) and dataset in (None, name):
            return key
    return None


def paper_template(dataset: str | None, tasks: Sequence[str], shots: int) -> PromptTemplate:
    """The paper's prompt for a dataset, task set (any order; the answer order is the paper's) and shots.

    Raises:
        ValueError: No paper prompt for this combination (the message lists those that exist).
    """
    key = paper_key(tasks, shots, dataset)
    if key is None:
        known = "; ".join(f"{d} {'+'.join(t)} {s}-shot" for d, t, s in PAPER_LISTINGS)
        what = " ".join([*([dataset] if dataset else []), "+".join(tasks), f"{shots}-shot"])
        raise ValueError(f"no paper prompt for {what} (paper prompts: {known}); give the model a prompt_file")
    name, names, count = key
    path = PAPER_PROMPTS / f"{name}-{'+'.join(names)}-{count}shot.yaml"
    fields = _template_mapping(path.read_text(encoding="utf-8"), path)
    return PromptTemplate(names, count, source=f"Listing {PAPER_LISTINGS[key]}", **fields)


def get_template(
    dataset: str | None, tasks: Sequence[str], shots: int, path: str | Path | None = None
) -> PromptTemplate:
    """The prompt for a dataset, task set and number of shots: a user file if given, else the paper's.

    Args:
        dataset: A DataModule's ``dataset_name`` (``newsgroups``, ``massive``; ignored with ``path``); None:
            the paper prompt whose tasks are ``tasks``.
        tasks: Task names; for the paper's multi-task prompts any order (the answer order is the paper's).
        shots: Number of few-shot examples (0 or 5 for the paper's prompts).
        path: Optional template file (see :func:`load_template`).

    Raises:
        ValueError: No paper prompt for this combination, and no ``path`` (the message lists those that exist).
    """
    if path is not None:
        return load_template(path, tasks, shots)
    return paper_template(dataset, tasks, shots)


def load_template(path: str | Path, tasks: Sequence[str], shots: int) -> PromptTemplate:
    """Read a user prompt template.

    A ``.yaml``/``.yml``/``.json`` file is a mapping with ``prompt`` (required) and optional ``system``,
    ``shot`` (one few-shot example, ``{text}`` and ``{answer}``), ``keys`` (JSON key per task), ``style``
    (``serial`` or ``json``) and ``token_format`` (``labels`` or ``inline``), see :class:`PromptTemplate`. Any
    other file is the prompt itself. Placeholders: see the module docstring.

    Args:
        path: The file.
        tasks: Task names in answer order (``keys`` default to ``task1``, ``task2``, ... in this order).
        shots: Number of few-shot examples; the prompt must use ``{examples}`` exactly when it is above 0.

    Raises:
        ValueError: One line naming the file: unreadable, malformed, or an unknown placeholder.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ValueError(f"prompt_file: {path}: cannot read the prompt template ({reason})") from None
    fields = _template_mapping(raw, path) if path.suffix.lower() in (".yaml", ".yml", ".json") else {"prompt": raw}
    return PromptTemplate(tuple(tasks), shots, source=str(path), **fields)


def _template_mapping(raw: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML/JSON ({str(err).splitlines()[0]})") from None
    allowed = {"prompt", "system", "shot", "keys", "style", "token_format", "variant"}
    if not isinstance(data, Mapping) or "prompt" not in data or set(data) - allowed:
        raise ValueError(f"{path}: expected a mapping with 'prompt' and optionally {sorted(allowed - {'prompt'})}")
    strings = ("prompt", "system", "shot", "style", "token_format", "variant")
    if any(not isinstance(data[k], str) for k in strings if data.get(k) is not None):
        raise ValueError(f"{path}: 'prompt', 'system', 'shot', 'style', 'token_format' and 'variant' must be strings")
    keys = data.get("keys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(key, str) for key in keys)):
        raise ValueError(f"{path}: 'keys' must be a list of strings, one JSON key per task")
    return {k: tuple(v) if k == "keys" else v for k, v in data.items() if v is not None}
