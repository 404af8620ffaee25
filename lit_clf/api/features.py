"""Examples -> chat messages for API models: the decoder module's prompts (the paper's, a prompt file or the generic
one; zero- or few-shot; one task or several), sent as text instead of token ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lit_clf.data.base import DatasetInfo
from lit_clf.data.tasks import Example, TaskSpec
from lit_clf.prompting.answers import render_answer
from lit_clf.prompting.encoding import ShotsDraw, select_shots
from lit_clf.prompting.formats import chat_messages
from lit_clf.prompting.options import check_prompt_options, check_shot_pool, prompt_template
from lit_clf.prompting.scoring import collate_gold, gold_ids
from lit_clf.prompting.templates import PromptTemplate

__all__ = ["ApiFeaturizer"]


class ApiFeaturizer:
    """Builds one chat request per example: ``[system,] user`` messages, the gold ids and the word count.

    Args:
        tasks: Task specs; the template fixes the answer order.
        shots: Few-shot examples per prompt, drawn from the DataModule's training split.
        prompt_file: A template file instead of the paper's or the generic prompt.
        prompt_style: Answer style of the generic prompt (``serial``, ``json``).
        label_descriptions: Task -> label -> description, for the generic prompt.
        shots_draw: ``per_example`` or ``fixed`` (:func:`~lit_clf.prompting.encoding.select_shots`).
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        shots: int = 0,
        prompt_file: str | Path | None = None,
        prompt_style: str | None = None,
        label_descriptions: Mapping[str, Mapping[str, str]] | None = None,
        shots_draw: ShotsDraw = "per_example",
    ) -> None:
        check_prompt_options(tasks, shots, shots_draw, prompt_style, label_descriptions)
        self.tasks = list(tasks)
        self.shots = shots
        self.prompt_file = prompt_file
        self.prompt_style = prompt_style
        self.label_descriptions = label_descriptions
        self.shots_draw = shots_draw
        self.info = DatasetInfo(name="")
        self._template: PromptTemplate | None = None

    @property
    def template(self) -> PromptTemplate:
        """The prompt of the last featurized dataset."""
        if self._template is None:
            self._template = self._make_template(self.info)
        return self._template

    @property
    def answer_tasks(self) -> list[TaskSpec]:
        """The tasks in answer order (the template's)."""
        by_name = {task.name: task for task in self.tasks}
        return [by_name[name] for name in self.template.tasks]

    def _make_template(self, info: DatasetInfo) -> PromptTemplate:
        return prompt_template(
            info.name or None, self.tasks, self.shots, self.prompt_file, self.prompt_style, self.label_descriptions
        )

    def featurize(self, examples: Sequence[Example], train: bool, info: DatasetInfo | None = None) -> list[dict]:
        """One request per example (any split); ``train`` is refused: API models are only evaluated."""
        if train:
            raise ValueError("API models answer as they are: use lit-clf test or predict, not fit")
        if info is not None:
            check_shot_pool(self.shots, info)
            self.info, self._template = info, self._make_template(info)
        return [self.feature(index, example) for index, example in enumerate(examples)]

    def feature(self, index: int, example: Example) -> dict[str, Any]:
        """The messages, gold ids and word count of one example."""
        return {
            "index": index,
            "messages": self.messages(example),
            "num_words": len(example.words),
            "gold": gold_ids(example, self.tasks),
        }

    def shots_for(self, example: Example) -> list[Example]:
        """The few-shot examples of ``example``'s prompt (:func:`~lit_clf.prompting.encoding.select_shots`)."""
        return select_shots(example, self.info.train, self.template.shots, self.info.seed, self.shots_draw)

    def messages(self, example: Example) -> list[dict[str, str]]:
        """``[{"role": "system", ...},] {"role": "user", ...}`` for ``example``, few-shot examples included."""
        template, tasks = self.template, self.answer_tasks
        shots = self.shots_for(example)
        keys = template.keys or None
        answers = [render_answer(shot, tasks, keys, template.style, template.token_format) for shot in shots]
        system, user = template.render(tasks, example.text, [(shot.text, a) for shot, a in zip(shots, answers)])
        return chat_messages(system, user)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "index": torch.tensor([f["index"] for f in features]),
            "messages": [f["messages"] for f in features],
            "num_words": [f["num_words"] for f in features],
            "gold": collate_gold(features, self.tasks),
        }

    def length(self, feature: dict[str, Any]) -> int:
        return sum(len(message["content"]) for message in feature["messages"])

    def describe(self, feature: dict[str, Any]) -> str:
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in feature["messages"])
