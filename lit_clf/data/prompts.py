"""Prompts of the decoder family: the paper's templates, prompt formats, few-shot examples, budgets and masking.

Pipeline for one example (all in :class:`PromptEncoder`):

1. pick the few-shot examples from the training pool (:func:`select_shots`, seeded per query);
2. fill a :class:`PromptTemplate` (the paper's Listings 1-12, or a user file) with the label lists, the
   examples and the query text;
3. wrap it in a prompt format (:data:`PromptFormat`): ``raw`` text, Llama-2 ``[INST]`` or the tokenizer's
   chat template; the result is the *prompt ids*, exactly the ids given to ``generate``;
4. append the *answer ids* (the answer text of :mod:`lit_clf.answers`, tokenized on its own) and EOS.
   Labels are -100 on the prompt ids and equal the ids on answer + EOS: the boundary is the length of the
   prompt ids, never found by searching text.

Long documents are cut to a token budget so that prompt + answer always fit ``max_length``: the answer is
never cut, the query and the examples share what the template leaves (:func:`allocate_budgets`).

Placeholder syntax of templates (``str.format`` fields; write literal braces as ``{{`` and ``}}``):

* ``{text}``: the query text (required);
* ``{examples}``: the few-shot block (required when ``shots > 0``, not allowed otherwise);
* ``{labels_<task>}``: the task's label list as a Python list, ``['alt.atheism', 'comp.graphics']``;
  ``{labels_<task>:json}`` writes a JSON list, ``["alt", "comp"]``. A token task's list leaves out ``Other``,
  which the slot prompts name on their own;
* ``{other}``: the word label for words outside every slot (``Other``).

One few-shot example is written with the template's ``shot`` pattern (fields ``{text}`` and ``{answer}``);
examples are separated by a blank line.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from lit_clf.answers import ParsedAnswer, default_keys, parse_answer, render_answer
from lit_clf.data.base import pad_sequences
from lit_clf.data.tasks import OTHER, Example, TaskSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "BUILTIN_TEMPLATES",
    "IGNORE_INDEX",
    "PromptEncoder",
    "PromptFormat",
    "PromptTemplate",
    "allocate_budgets",
    "get_template",
    "load_template",
    "pad_batch",
    "select_shots",
    "water_fill",
]

#: Label value of positions that do not count in the loss.
IGNORE_INDEX = -100

#: ``raw``: system + prompt text, then `` {answer}``. ``llama2``: ``<s>[INST] {prompt} [/INST] {answer} </s>``
#: (Meta's chat format, ``<<SYS>>`` block for a system prompt). ``chat``: the tokenizer's chat template, user
#: turn = prompt, assistant turn = answer.
PromptFormat = Literal["raw", "llama2", "chat"]
PROMPT_FORMATS: tuple[str, ...] = ("raw", "llama2", "chat")

# ---------------------------------------------------------------------------------------------------------------------
# The paper's prompts (Zhao et al. 2024, appendix Listings 1-12), wording verbatim except for these fixes:
#
# * "classifity" -> "classify" (Listings 7, 8) and "Bellow" -> "Below" (Listings 3, 4, 6, 8, 10, 12);
# * label lists are rendered from TaskSpec.labels, which also repairs the lists' lost quotes
#   (’alt.atheism’, comp.graphics’ ... in Listings 1, 3, 5, 6; ..., talk"] in Listings 2, 4, 5, 6). The 20-class
#   list keeps the paper's Python-list style ['a', 'b'], the 7-class list its JSON style ["a", "b"]; for the
#   MASSIVE lists, printed as a {Labels} variable, the Python style of Listing 1 is assumed;
# * "{{Examples}}" (Listings 3, 4), which str.format would print literally, is the {examples} field;
# * the wrapper ("[INST]", "[/INST]" in Listings 1, 3, 5, 6 only), the leading newline and the trailing
#   "{Label}" are left out: the prompt format adds the wrapper and the answer;
# * the literal "Other" of the slot prompts is the {other} field (tasks.OTHER), so it is stated once;
# * Listing 12's query prompt is cut off after "End of <<Utter>>" in the paper; its last line "Output:" is
#   Listing 11's. Listing 9 is printed twice; it is one template;
# * Listings 11 and 12 split the prompt into a system and a query prompt; the system prompt's trailing newline
#   is dropped (the raw format joins the two with a newline, as Listing 5, their 20NG twin, has them).
#
# Kept as printed: "a two json fields", "each of the word", "utter text", "Output the Slots only", the missing
# period after the 20NG label lists and the double blank line of Listing 5.
# The paper does not show how one few-shot example is written; each mirrors the query block and its answer cue.

_NEWS_SHOT = "Beginning of <<News>>\n{text}\nEnd of <<News>>\nLabel: {answer}"
_NEWS_MULTI_SHOT = "Beginning of <<News>>\n{text}\nEnd of <<News>>\nOutput: {answer}"
_UTTER_SHOT = "Beginning of <<Utter>>\n{text}\nEnd of <<Utter>>\nLabel: {answer}"
_SLOTS_SHOT = "Beginning of <<Utter>>\n{text}\nEnd of <<Utter>>\nSlots: {answer}"
_UTTER_MULTI_SHOT = "Beginning of <<Utter>>\n{text}\nEnd of <<Utter>>\nOutput: {answer}"

_LISTING_1 = """You will be given a news text.
Your task is to classify it as one of the labels in the list {labels_topic20}

Output the label only and absolutely nothing else.
Now it is your turn.

Beginning of <<News>>
{text}
End of <<News>>

Label:"""

_LISTING_2 = """You will be given a news text.
Your task is to classify it as one of the labels in the list {labels_topic7:json}

Output the label only and absolutely nothing else.
Now it is your turn.

Beginning of <<News>>
{text}
End of <<News>>

Label:"""

_LISTING_3 = """You will be given a news text.
Your task is to classify it as one of the labels in the list {labels_topic20}

Below are some examples with the correct classification:

Beginning of <<Examples>>
{examples}
End of <<Examples>>

Output the label only and absolutely nothing else.
Now it is your turn.

Beginning of <<News>>
{text}
End of <<News>>

Label:"""

_LISTING_4 = """You will be given a news text.
Your task is to classify it as one of the labels in the list {labels_topic7:json}

Below are some examples with the correct classification:

Beginning of <<Examples>>
{examples}
End of <<Examples>>

Output the label only and absolutely nothing else.
Now it is your turn.

Beginning of <<News>>
{text}
End of <<News>>

Label:"""

_LISTING_5 = """You will be given a news text.
You are given two classification tasks.
You should output the result as a two json fields as {{"task1": "task1_label", "task2": "task2_label"}}
In the first task, given the news text, you are asked to classify it as one of the labels in the list \
{labels_topic7:json} and change task1_label to the correct label in the list.
In the second task, given the news text, you are asked to classify it as one of the labels in the list \
{labels_topic20} and change task2_label to the correct label in the list.


Output the two json fields only and absolutely nothing else.
Now it is your turn.

Beginning of <<News>>
{text}
End of <<News>>

Output:"""

_LISTING_6 = """You will be given a news text.
You are given two classification tasks.
You should output the result as a two json fields as {{"task1": "task1_label", "task2": "task2_label"}}
In the first task, given the news text, you are asked to classify it as one of the labels in the list \
{labels_topic7:json} and change task1_label to the correct label in the list.
In the second task, given the news text, you are asked to classify it as one of the labels in the list \
{labels_topic20} and change task2_label to the correct label in the list.

Below are some examples with the correct classification:

Beginning of <<Examples>>
{examples}
End of <<Examples>>

Output the two json fields only and absolutely nothing else.
Now it is your turn.

Beginning of <<News>>
{text}
End of <<News>>

Output:"""

_LISTING_7 = """You will be given an utter text.
Your task is to classify it as one of the labels in the list {labels_intent}.

Output the label only and absolutely nothing else.
Now it is your turn.

Beginning of <<Utter>>
{text}
End of <<Utter>>

Label:"""

_LISTING_8 = """You will be given an utter text.
Your task is to classify it as one of the labels in the list {labels_intent}.

Below are some examples with the correct classification:

Beginning of <<Examples>>
{examples}
End of <<Examples>>

Output the label only and absolutely nothing else.
Now it is your turn.

Beginning of <<Utter>>
{text}
End of <<Utter>>

Label:"""

_LISTING_9 = """You will be given an utter text.
Your task is to classify each of the word in the utter text as one of the labels in the list {labels_slots}.
If none of the labels in the list are correct, then output the label for that word as "{other}".
Put all the labels in the slots list.

Output the Slots only and absolutely nothing else.
Now it is your turn.

Beginning of <<Utter>>
{text}
End of <<Utter>>

Slots:"""

_LISTING_10 = """You will be given an utter text.
Your task is to classify each of the word in the utter text as one of the labels in the list {labels_slots}.
If none of the labels in the list are correct, then output the label for that word as "{other}".
Put all the labels in the slots list.

Below are some examples with the correct slot filling classification:

Beginning of <<Examples>>
{examples}
End of <<Examples>>

Output the Slots only and absolutely nothing else.
Now it is your turn.

Beginning of <<Utter>>
{text}
End of <<Utter>>

Slots:"""

_MASSIVE_MULTI_SYSTEM = """You will be given an utter text.
You are given two classification tasks.
You should output the result as a two json fields as {{"task1": "task1_label", "task2": "task2_label"}}"""

_LISTING_11 = """In the first task, given the utter text, you are asked to classify it as one of the labels in the \
list {labels_intent}.
In the second task, given the utter text, you are asked to classify each of the word in the utter text as one of \
the labels in the list {labels_slots}. If none of the labels in the list are correct, then output the label for \
that word as "{other}". Put all the labels in the slots list.

Output the two json fields only and absolutely nothing else.
Now it is your turn.

Beginning of <<Utter>>
{text}
End of <<Utter>>

Output:"""

_LISTING_12 = """In the first task, given the utter text, you are asked to classify it as one of the labels in the \
list {labels_intent}.
In the second task, given the utter text, you are asked to classify each of the word in the utter text as one of \
the labels in the list {labels_slots}. If none of the labels in the list are correct, then output the label for \
that word as "{other}". Put all the labels in the slots list.

Below are some examples with the correct classification:

Beginning of <<Examples>>
{examples}
End of <<Examples>>

Output the two json fields only and absolutely nothing else.
Now it is your turn.

Beginning of <<Utter>>
{text}
End of <<Utter>>

Output:"""

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
        keys: JSON key per task of a multi-task answer; default ``task1``, ``task2``, ...
        source: Where the template comes from (``Listing 7`` or a file path), named in errors.
    """

    tasks: tuple[str, ...]
    shots: int
    prompt: str
    system: str | None = None
    shot: str = "Text: {text}\nAnswer: {answer}"
    keys: tuple[str, ...] = ()
    source: str = "template"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "keys", tuple(self.keys) or (default_keys(len(self.tasks)) if self.multi else ()))
        self._check()

    @property
    def multi(self) -> bool:
        """Whether the answer is the JSON object of several tasks."""
        return len(self.tasks) > 1

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
        values: dict[str, Any] = {"text": text, "other": OTHER}
        values["examples"] = "\n\n".join(self.shot.format(text=t, answer=a) for t, a in examples)
        for name in self.tasks:
            spec = by_name[name]
            labels = [label for label in spec.labels if spec.kind == "sequence" or label != OTHER]
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
        if self.multi and len(self.keys) != len(self.tasks):
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


TemplateKey = tuple[str, tuple[str, ...], int]


def _builtin(
    dataset: str, tasks: tuple[str, ...], shots: int, listing: int, prompt: str, shot: str, **kw: Any
) -> tuple[TemplateKey, PromptTemplate]:
    return (dataset, tasks, shots), PromptTemplate(tasks, shots, prompt, shot=shot, source=f"Listing {listing}", **kw)


#: The paper's prompts keyed by ``(dataset, task names, shots)``; multi-task keys list tasks in answer order
#: (``task1`` first), but :func:`get_template` accepts them in any order.
BUILTIN_TEMPLATES: dict[TemplateKey, PromptTemplate] = dict(
    [
        _builtin("20ng", ("topic20",), 0, 1, _LISTING_1, _NEWS_SHOT),
        _builtin("20ng", ("topic7",), 0, 2, _LISTING_2, _NEWS_SHOT),
        _builtin("20ng", ("topic20",), 5, 3, _LISTING_3, _NEWS_SHOT),
        _builtin("20ng", ("topic7",), 5, 4, _LISTING_4, _NEWS_SHOT),
        _builtin("20ng", ("topic7", "topic20"), 0, 5, _LISTING_5, _NEWS_MULTI_SHOT),
        _builtin("20ng", ("topic7", "topic20"), 5, 6, _LISTING_6, _NEWS_MULTI_SHOT),
        _builtin("massive", ("intent",), 0, 7, _LISTING_7, _UTTER_SHOT),
        _builtin("massive", ("intent",), 5, 8, _LISTING_8, _UTTER_SHOT),
        _builtin("massive", ("slots",), 0, 9, _LISTING_9, _SLOTS_SHOT),
        _builtin("massive", ("slots",), 5, 10, _LISTING_10, _SLOTS_SHOT),
        _builtin("massive", ("intent", "slots"), 0, 11, _LISTING_11, _UTTER_MULTI_SHOT, system=_MASSIVE_MULTI_SYSTEM),
        _builtin("massive", ("intent", "slots"), 5, 12, _LISTING_12, _UTTER_MULTI_SHOT, system=_MASSIVE_MULTI_SYSTEM),
    ]
)


def get_template(dataset: str, tasks: Sequence[str], shots: int, path: str | Path | None = None) -> PromptTemplate:
    """The prompt for a dataset, task set and number of shots: a user file if given, else the paper's.

    Args:
        dataset: ``20ng`` or ``massive`` (ignored with ``path``).
        tasks: Task names; for the built-in multi-task prompts any order (the answer order is the paper's).
        shots: Number of few-shot examples (0 or 5 for the built-in prompts).
        path: Optional template file (see :func:`load_template`).

    Raises:
        ValueError: No built-in prompt for this combination (the message lists those that exist).
    """
    if path is not None:
        return load_template(path, tasks, shots)
    for (name, names, count), template in BUILTIN_TEMPLATES.items():
        if name == dataset and count == shots and sorted(names) == sorted(tasks):
            return template
    known = "; ".join(f"{d} {'+'.join(t)} {s}-shot" for d, t, s in BUILTIN_TEMPLATES)
    raise ValueError(f"no built-in prompt for {dataset} {'+'.join(tasks)} {shots}-shot; available: {known}")


def load_template(path: str | Path, tasks: Sequence[str], shots: int) -> PromptTemplate:
    """Read a user prompt template.

    A ``.yaml``/``.yml``/``.json`` file is a mapping with ``prompt`` (required) and optional ``system``,
    ``shot`` (one few-shot example, ``{text}`` and ``{answer}``) and ``keys`` (JSON key per task). Any other
    file is the prompt itself. Placeholders: see the module docstring.

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
        raise ValueError(f"{path}: cannot read the prompt template ({err})") from None
    fields = _template_mapping(raw, path) if path.suffix.lower() in (".yaml", ".yml", ".json") else {"prompt": raw}
    return PromptTemplate(tuple(tasks), shots, source=str(path), **fields)


def _template_mapping(raw: str, path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML/JSON ({str(err).splitlines()[0]})") from None
    allowed = {"prompt", "system", "shot", "keys"}
    if not isinstance(data, Mapping) or "prompt" not in data or set(data) - allowed:
        raise ValueError(f"{path}: expected a mapping with 'prompt' and optionally {sorted(allowed - {'prompt'})}")
    if any(not isinstance(data[k], str) for k in ("prompt", "system", "shot") if data.get(k) is not None):
        raise ValueError(f"{path}: 'prompt', 'system' and 'shot' must be strings")
    keys = data.get("keys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(key, str) for key in keys)):
        raise ValueError(f"{path}: 'keys' must be a list of strings, one JSON key per task")
    return {k: tuple(v) if k == "keys" else v for k, v in data.items() if v is not None}


# ---------------------------------------------------------------------------------------------------------------------
# Few-shot examples and token budgets


def select_shots(query: Example, pool: Sequence[Example], k: int, seed: int) -> list[Example]:
    """``k`` examples drawn from ``pool`` for ``query``, never the query itself (same id).

    The draw uses ``random.Random(f"{seed}/{query.id}")``: the same query gets the same examples in every
    epoch, worker and run with this seed, whatever the order in which queries are encoded.

    Raises:
        ValueError: The pool has fewer than ``k`` examples besides the query.
    """
    if k <= 0:
        return []
    rng = random.Random(f"{seed}/{query.id}")
    picked = [pool[i] for i in rng.sample(range(len(pool)), min(k + 1, len(pool)))]
    shots = [example for example in picked if example.id != query.id][:k]
    if len(shots) < k:
        raise ValueError(f"few-shot pool: {len(pool)} examples cannot give {k} shots other than {query.id!r}")
    return shots


def water_fill(lengths: Sequence[int], budget: int) -> list[int]:
    """Max-min fair split of ``budget`` tokens: short items keep their length, long ones share the rest equally."""
    budgets = [0] * len(lengths)
    remaining = max(budget, 0)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for rank, i in enumerate(order):
        budgets[i] = min(lengths[i], remaining // (len(order) - rank))
        remaining -= budgets[i]
    return budgets


def allocate_budgets(query_len: int, shot_lens: Sequence[int], budget: int) -> tuple[int, list[int]]:
    """Token budgets for the query and each few-shot text, summing to at most ``budget``.

    The examples get what the query leaves, but at least half of ``budget`` (shared by :func:`water_fill`)
    when the query is long; the query gets the rest. So a long query keeps at least half the room, and short
    examples are never cut to make room for it.

    Args:
        query_len: Tokens of the full query text.
        shot_lens: Tokens of each full example text.
        budget: Tokens available to all texts together.

    Returns:
        ``(query budget, budget per example)``; a budget equal to the length means "not cut".
    """
    shots = water_fill(shot_lens, max(budget - query_len, budget // 2))
    return min(query_len, max(budget - sum(shots), 0)), shots


# ---------------------------------------------------------------------------------------------------------------------
# Token ids


@dataclass
class PromptEncoder:
    """Turns examples into token ids for training and generation with one template and prompt format.

    Attributes:
        tokenizer: The decoder's tokenizer; its EOS ends every answer (the ``chat`` format needs a chat
            template, whose end-of-turn token should be the EOS, as in Llama 3 Instruct and ChatML models).
        template: The prompt (:func:`get_template`).
        tasks: Specs of the template's tasks (label lists, answer syntax).
        fmt: Prompt format: ``raw``, ``llama2`` or ``chat``.
        max_length: Most tokens of prompt + answer + EOS (16,384 in the paper); texts are cut to fit.
        pool: Training examples the few-shot examples are drawn from (needed when ``template.shots > 0``).
        seed: Seed of the few-shot draw (:func:`select_shots`).
    """

    tokenizer: PreTrainedTokenizerBase
    template: PromptTemplate
    tasks: Sequence[TaskSpec]
    fmt: PromptFormat = "chat"
    max_length: int = 16384
    pool: Sequence[Example] = ()
    seed: int = 0
    _bos: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.fmt not in PROMPT_FORMATS:
            raise ValueError(f"fmt: expected one of {', '.join(PROMPT_FORMATS)}, got {self.fmt!r}")
        if self.fmt == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("fmt='chat': the tokenizer has no chat template; use fmt='llama2' or 'raw'")
        if self.tokenizer.eos_token_id is None:
            raise ValueError("tokenizer: no eos_token_id; answers need an end-of-sequence token")
        by_name = {task.name: task for task in self.tasks}
        missing = [name for name in self.template.tasks if name not in by_name]
        if missing:
            raise ValueError(f"tasks: no spec for {missing[0]!r}, which {self.template.source} asks for")
        self.tasks = [by_name[name] for name in self.template.tasks]  # answer order = the template's
        if self.template.shots and len(self.pool) <= self.template.shots:
            raise ValueError(f"pool: {self.template.shots}-shot prompts need more than {len(self.pool)} examples")
        self._bos = _bos_prefix(self.tokenizer)

    def encode_for_training(self, example: Example) -> dict[str, list[int]]:
        """``input_ids`` = prompt ids + answer ids + EOS; ``labels`` = -100 on the prompt, the ids after it.

        The prompt ids are exactly ``encode_for_generation(example, len(answer ids) + 1)["input_ids"]``.

        Returns:
            ``{"input_ids", "labels", "attention_mask"}``, lists of equal length, at most ``max_length``.
        """
        answer = self.answer_ids(example) + [self.tokenizer.eos_token_id]
        prompt = self.prompt_ids(example, reserve=len(answer))
        return {
            "input_ids": prompt + answer,
            "labels": [IGNORE_INDEX] * len(prompt) + answer,
            "attention_mask": [1] * (len(prompt) + len(answer)),
        }

    def encode_for_generation(self, example: Example, max_new_tokens: int) -> dict[str, list[int]]:
        """Prompt ids only, cut so that ``max_new_tokens`` more still fit ``max_length``.

        Returns:
            ``{"input_ids", "attention_mask"}``; pad on the left for batched generation (:func:`pad_batch`).
        """
        prompt = self.prompt_ids(example, reserve=max_new_tokens)
        return {"input_ids": prompt, "attention_mask": [1] * len(prompt)}

    def answer_text(self, example: Example) -> str:
        """The gold answer in the answer syntax of :mod:`lit_clf.answers`."""
        return render_answer(example, self.tasks, self.template.keys or None)

    def answer_ids(self, example: Example) -> list[int]:
        """Ids of the gold answer as it follows the prompt (without EOS); never cut."""
        return self._ids(answer_segment(self.answer_text(example), self.fmt))

    def parse(self, text: str, example: Example) -> dict[str, ParsedAnswer]:
        """Read a decoded generation for ``example`` (see :func:`lit_clf.answers.parse_answer`); never raises."""
        return parse_answer(text, self.tasks, self.template.keys or None, num_words=len(example.words))

    def shots_for(self, example: Example) -> list[Example]:
        """The few-shot examples of ``example`` (:func:`select_shots`)."""
        return select_shots(example, self.pool, self.template.shots, self.seed)

    def prompt_ids(self, example: Example, reserve: int) -> list[int]:
        """The formatted prompt's ids, texts cut so that ``reserve`` more tokens fit ``max_length``.

        Raises:
            ValueError: Even with empty texts the prompt and ``reserve`` do not fit ``max_length``.
        """
        shots = self.shots_for(example)
        answers = [render_answer(shot, self.tasks, self.template.keys or None) for shot in shots]
        texts = [shot.text for shot in shots] + [example.text]
        ids = self._render_ids(texts, answers)
        if len(ids) + reserve <= self.max_length:
            return ids
        return self._fit(texts, answers, reserve, example.id)

    def _fit(self, texts: list[str], answers: list[str], reserve: int, example_id: str) -> list[int]:
        """Cut ``texts`` (shots..., query) by tokens until the prompt and ``reserve`` fit ``max_length``."""
        overhead = len(self._render_ids([""] * len(texts), answers))
        budget = self.max_length - reserve - overhead
        if budget < 0:
            raise ValueError(
                f"max_length={self.max_length} cannot hold example {example_id!r}: the prompt without its texts "
                f"takes {overhead} tokens and the answer needs {reserve}"
            )
        text_ids = [self._ids(text) for text in texts]
        query, shots = allocate_budgets(len(text_ids[-1]), [len(ids) for ids in text_ids[:-1]], budget)
        budgets = [*shots, query]
        while True:
            cut = [t if b >= len(i) else self._decode(i[:b]) for t, i, b in zip(texts, text_ids, budgets)]
            ids = self._render_ids(cut, answers)
            overflow = len(ids) + reserve - self.max_length
            if overflow <= 0:
                return ids
            if not any(budgets):  # cannot happen for texts that tokenize to something; guards the loop
                raise ValueError(f"example {example_id!r}: the prompt does not fit max_length={self.max_length}")
            # Re-tokenizing cut text in context can differ by a few tokens: take them from the largest budget.
            # Terminates: the total budget shrinks each round, and all-empty texts fit by the check above.
            largest = max(range(len(budgets)), key=lambda i: budgets[i])
            budgets[largest] = max(0, budgets[largest] - overflow)

    def _render_ids(self, texts: list[str], answers: list[str]) -> list[int]:
        system, user = self.template.render(self.tasks, texts[-1], list(zip(texts[:-1], answers)))
        if self.fmt == "chat":
            messages = [{"role": "system", "content": system}] if system is not None else []
            messages.append({"role": "user", "content": user})
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self._ids(rendered)  # the template writes BOS itself where the model has one
        return self._bos + self._ids(_wrap_prompt(system, user, self.fmt))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _wrap_prompt(system: str | None, user: str, fmt: PromptFormat) -> str:
    """The prompt text of the ``raw`` and ``llama2`` formats (BOS excluded)."""
    if fmt == "raw":
        return user if system is None else f"{system}\n{user}"
    # Meta's llama/generation.py: f"{B_INST} {content.strip()} {E_INST}", the system prompt in a <<SYS>> block.
    content = user if system is None else f"<<SYS>>\n{system}\n<</SYS>>\n\n{user}"
    return f"[INST] {content.strip()} [/INST]"


def answer_segment(answer: str, fmt: PromptFormat) -> str:
    """The answer text as it follows the prompt: after ``Label:`` (raw) or ``[/INST]`` (llama2) a space, and
    Meta's trailing space before ``</s>`` (``[/INST] {answer} </s>``); right after the assistant header (chat)."""
    if fmt == "raw":
        return f" {answer}"
    if fmt == "llama2":
        return f" {answer.strip()} "
    return answer


def _bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids the tokenizer puts before a text by default (``[<s>]`` for Llama 2, ``[]`` for SmolLM2)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return list(with_special[:start])
    return []


def pad_batch(
    features: Sequence[Mapping[str, Sequence[int]]], pad_id: int, side: Literal["left", "right"] = "right"
) -> dict[str, torch.Tensor]:
    """Pad features to the longest one: ``input_ids`` with ``pad_id``, ``attention_mask`` with 0, ``labels`` with -100.

    Args:
        features: Outputs of :meth:`PromptEncoder.encode_for_training` or ``encode_for_generation``.
        pad_id: Id written in padded ``input_ids`` positions (masked out; e.g. EOS when there is no pad token).
        side: ``right`` for training, ``left`` for generation (new tokens then follow every prompt directly).

    Returns:
        Key -> ``(batch, longest)`` long tensor, for each key of the first feature.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side: expected 'left' or 'right', got {side!r}")
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    unknown = [key for key in features[0] if key not in fill]
    if unknown:
        raise ValueError(f"pad_batch: no padding value for {unknown[0]!r} (knows {', '.join(fill)})")
    return {key: pad_sequences([feature[key] for feature in features], fill[key], side) for key in features[0]}
