"""Prompt tokens and masks: examples -> prompt ids + answer ids + EOS, labels -100 on the prompt.

Pipeline for one example (all in :class:`PromptEncoder`):

1. pick the few-shot examples from the training pool (:func:`select_shots`, seeded per query);
2. fill a :class:`~lit_clf.prompting.templates.PromptTemplate` (the paper's Listings 1-12, or a user file) with
   the label lists, the examples and the query text;
3. wrap it in a prompt format (:mod:`lit_clf.prompting.formats`): ``raw`` text, Llama-2 ``[INST]`` or the
   tokenizer's chat template; the result is the *prompt ids*, exactly the ids given to ``generate``;
4. append the *answer ids* (the answer text of :mod:`lit_clf.prompting.answers`, tokenized on its own) and EOS.
   Labels are -100 on the prompt ids and equal the ids on answer + EOS: the boundary is the length of the
   prompt ids, never found by searching text.

Long documents are cut to a token budget so that prompt + answer always fit ``max_length``: the answer is
never cut, the query and the examples share what the template leaves (:func:`allocate_budgets`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from lit_clf.data.tasks import IGNORE_INDEX, Example, TaskSpec
from lit_clf.prompting.answers import ParsedAnswer, parse_answer, render_answer, render_answer_parts
from lit_clf.prompting.formats import (
    PROMPT_FORMATS,
    PromptFormat,
    answer_segment,
    bos_prefix,
    chat_messages,
    wrap_prompt,
)
from lit_clf.prompting.templates import PromptTemplate

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


#: ``per_example``: a seeded draw per query (the paper). ``fixed``: one seeded draw for every query.
ShotsDraw = Literal["per_example", "fixed"]
SHOTS_DRAWS: tuple[str, ...] = get_args(ShotsDraw)


def select_shots(
    query: Example, pool: Sequence[Example], k: int, seed: int, draw: ShotsDraw = "per_example"
) -> list[Example]:
    """``k`` examples drawn from ``pool`` for ``query``, never the query itself (same id).

    ``per_example``: the draw uses ``random.Random(f"{seed}/{query.id}")``: the same query gets the same examples
    in every epoch, worker and run with this seed, whatever the order in which queries are encoded. ``fixed``: one
    draw of ``k + 1`` examples with ``random.Random(f"{seed}/fixed")`` serves every query; each query takes the
    first ``k`` of them that are not itself, so all queries but those ``k`` share the same examples.

    Raises:
        ValueError: The pool has fewer than ``k`` examples besides the query.
    """
    if k <= 0:
        return []
    rng = random.Random(f"{seed}/{query.id}" if draw == "per_example" else f"{seed}/fixed")
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


@dataclass
class PromptEncoder:
    """Turns examples into token ids for training and generation with one template and prompt format.

    Attributes:
        tokenizer: The decoder's tokenizer; its EOS ends every answer (the ``chat`` format needs a chat
            template, whose end-of-turn token should be the EOS, as in Llama 3 Instruct and ChatML models).
        template: The prompt (:func:`get_template`).
        tasks: Specs of the template's tasks (label lists, answer syntax).
        prompt_format: Prompt format: ``raw``, ``llama2`` or ``chat``.
        max_length: Most tokens of prompt + answer + EOS (16,384 in the paper); texts are cut to fit.
        pool: Training examples the few-shot examples are drawn from (needed when ``template.shots > 0``).
        seed: Seed of the few-shot draw (:func:`select_shots`).
        shots_draw: ``per_example`` or ``fixed`` (:func:`select_shots`).
    """

    tokenizer: PreTrainedTokenizerBase
    template: PromptTemplate
    tasks: Sequence[TaskSpec]
    prompt_format: PromptFormat = "chat"
    max_length: int = 16384
    pool: Sequence[Example] = ()
    seed: int = 0
    shots_draw: ShotsDraw = "per_example"
    _bos: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if self.prompt_format == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                "prompt_format='chat': the tokenizer has no chat template; use prompt_format='llama2' or 'raw'"
            )
        if self.tokenizer.eos_token_id is None:
            raise ValueError("tokenizer: no eos_token_id; answers need an end-of-sequence token")
        by_name = {task.name: task for task in self.tasks}
        missing = [name for name in self.template.tasks if name not in by_name]
        if missing:
            raise ValueError(f"tasks: no spec for {missing[0]!r}, which {self.template.source} asks for")
        self.tasks = [by_name[name] for name in self.template.tasks]  # answer order = the template's
        if self.template.shots and len(self.pool) <= self.template.shots:
            raise ValueError(f"pool: {self.template.shots}-shot prompts need more than {len(self.pool)} examples")
        self._bos = bos_prefix(self.tokenizer)
        #: Whether the last prompt (:meth:`prompt_ids`, so also the ``encode_*`` methods) had its texts cut to fit.
        self.last_cut = False

    def encode_for_training(self, example: Example, answer_tasks: bool = False) -> dict[str, list[int]]:
        """``input_ids`` = prompt ids + answer ids + EOS; ``labels`` = -100 on the prompt, the ids after it.

        The prompt ids are exactly ``encode_for_generation(example, len(answer ids) + 1)["input_ids"]``.

        Args:
            example: The example.
            answer_tasks: Also return ``answer_task``: -100 on the prompt, then the task each answer id and the EOS
                belong to (:meth:`answer_ids_and_tasks`; for the per-task loss, ``loss_weighting: task``).

        Returns:
            ``{"input_ids", "labels", "attention_mask"}`` (and ``answer_task``), lists of equal length, at most
            ``max_length``.
        """
        ids, tasks = self.answer_ids_and_tasks(example) if answer_tasks else (self.answer_ids(example), None)
        answer = ids + [self.tokenizer.eos_token_id]
        prompt = self.prompt_ids(example, reserve=len(answer))
        feature = {
            "input_ids": prompt + answer,
            "labels": [IGNORE_INDEX] * len(prompt) + answer,
            "attention_mask": [1] * (len(prompt) + len(answer)),
        }
        if tasks is not None:
            feature["answer_task"] = [IGNORE_INDEX] * len(prompt) + tasks
        return feature

    def encode_for_generation(self, example: Example, max_new_tokens: int) -> dict[str, list[int]]:
        """Prompt ids only, cut so that ``max_new_tokens`` more still fit ``max_length``.

        Returns:
            ``{"input_ids", "attention_mask"}``; pad on the left for batched generation
            (:func:`~lit_clf.data.collate.pad_batch`).
        """
        prompt = self.prompt_ids(example, reserve=max_new_tokens)
        return {"input_ids": prompt, "attention_mask": [1] * len(prompt)}

    def answer_text(self, example: Example) -> str:
        """The gold answer in the answer syntax of :mod:`lit_clf.prompting.answers`."""
        template = self.template
        return render_answer(example, self.tasks, template.keys or None, template.style, template.token_format)

    def answer_ids(self, example: Example) -> list[int]:
        """Ids of the gold answer as it follows the prompt (without EOS); never cut."""
        return self._ids(answer_segment(self.answer_text(example), self.prompt_format))

    def answer_ids_and_tasks(self, example: Example) -> tuple[list[int], list[int]]:
        """:meth:`answer_ids` (from the same tokenization) and, for each of them and the EOS after them, the index
        (in answer order) of the task whose part of the answer it is: an id belongs to the first task whose value
        ends after the id's first character (:func:`~lit_clf.prompting.answers.render_answer_parts`); the literal text
        after the last value and the EOS belong to the last task. ``{"task1": "alarm_set", "task2": ["Other"]}`` ->
        0 up to and including the token that ends ``alarm_set"``, 1 from there on. Needs a fast tokenizer
        (character offsets; the featurizer checks it)."""
        template = self.template
        text, ends = render_answer_parts(
            example, self.tasks, template.keys or None, template.style, template.token_format
        )
        segment = answer_segment(text, self.prompt_format)
        shift = segment.find(text.strip()) - (len(text) - len(text.lstrip()))  # the format's leading space
        encoded = self.tokenizer(segment, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        last = len(ends) - 1
        tasks = [
            next((k for k, end in enumerate(ends) if start < end + shift), last)
            for start, _ in encoded["offset_mapping"]
        ]
        return encoded["input_ids"], tasks + [last]  # the EOS: the last task's

    def parse(self, text: str, example: Example) -> dict[str, ParsedAnswer]:
        """Read a decoded generation for ``example`` (:func:`~lit_clf.prompting.answers.parse_answer`); never raises."""
        return self.read(text, len(example.words))

    def read(self, text: str, num_words: int | None) -> dict[str, ParsedAnswer]:
        """Read a decoded generation of an input of ``num_words`` words; never raises."""
        template = self.template
        return parse_answer(text, self.tasks, template.keys or None, num_words, template.style, template.token_format)

    def shots_for(self, example: Example) -> list[Example]:
        """The few-shot examples of ``example`` (:func:`select_shots`)."""
        return select_shots(example, self.pool, self.template.shots, self.seed, self.shots_draw)

    def prompt_ids(self, example: Example, reserve: int) -> list[int]:
        """The formatted prompt's ids, texts cut so that ``reserve`` more tokens fit ``max_length``.

        Raises:
            ValueError: Even with empty texts the prompt and ``reserve`` do not fit ``max_length``.
        """
        shots = self.shots_for(example)
        answers = [self.answer_text(shot) for shot in shots]
        texts = [shot.text for shot in shots] + [example.text]
        ids = self._render_ids(texts, answers)
        self.last_cut = len(ids) + reserve > self.max_length
        if not self.last_cut:
            return ids
        return self._fit(texts, answers, reserve, example.id)

    def _fit(self, texts: list[str], answers: list[str], reserve: int, example_id: str) -> list[int]:
        """Cut ``texts`` (shots..., query) by tokens until the prompt and ``reserve`` fit ``max_length``."""
        overhead = len(self._render_ids([""] * len(texts), answers))
        budget = self.max_length - reserve - overhead
        if budget < 0:
            raise ValueError(
                f"max_length={self.max_length} cannot hold example {example_id!r}: the prompt without its texts "
                f"takes {overhead} tokens and the answer needs {reserve}; raise model.init_args.max_length (to "
                f"{overhead + reserve} at the very least)"
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
        if self.prompt_format == "chat":
            messages = chat_messages(system, user)
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self._ids(rendered)  # the template writes BOS itself where the model has one
        return self._bos + self._ids(wrap_prompt(system, user, self.prompt_format))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
