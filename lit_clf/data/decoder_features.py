"""Examples -> decoder inputs: masked prompt + answer for training, left-padded prompts for generation.

The prompt itself (template, format, few-shot draw, token budgets, answer mask) is
:class:`~lit_clf.data.prompts.PromptEncoder`'s job; this module picks its inputs and pads batches:

* training (``train=True``): ``encode_for_training`` features (labels -100 except answer + EOS), padded on the RIGHT;
* evaluation and prediction (any split): prompt ids only, the gold label ids for the metrics, the number of
  input words and a generation budget, padded on the LEFT so every row's new tokens follow its prompt directly.

Which prompt: the paper's (:data:`~lit_clf.data.prompts.BUILTIN_TEMPLATES`, keyed ``20ng``/``massive``) for the
DataModule's dataset, task set and number of shots, or a user file. DataModules name themselves
``newsgroups``/``massive`` (``dataset_name``); :data:`PROMPT_DATASETS` maps those names to the prompt keys, and a
dataset without prompts of its own (a test DataModule) uses the one prompt key whose templates cover its tasks.

Few-shot examples come from the DataModule's training split (after ``max_examples``), never the query itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lit_clf.answers import ParsedAnswer, parse_answer
from lit_clf.data.prompts import (
    BUILTIN_TEMPLATES,
    PROMPT_FORMATS,
    PromptEncoder,
    PromptFormat,
    get_template,
    pad_batch,
)
from lit_clf.data.tasks import Example, TaskSpec

#: DataModule ``dataset_name`` -> dataset key of the paper's prompts in :mod:`lit_clf.data.prompts`.
PROMPT_DATASETS = {"newsgroups": "20ng", "massive": "massive"}

#: Tokens added to the estimated longest answer (see :meth:`DecoderFeaturizer.answer_budget`): re-tokenizing a
#: label in another context can take a token more or less.
BUDGET_SLACK = 4


def prompt_dataset(name: str | None, tasks: Sequence[str]) -> str:
    """The prompt key (``20ng``/``massive``) of a DataModule ``dataset_name`` (or of a prompt key itself).

    A name without prompts (``None``, a test DataModule) falls back to the one key whose built-in templates cover
    ``tasks`` (``intent`` + ``slots`` -> ``massive``).

    Raises:
        ValueError: No built-in prompt key fits; the message says to give ``prompt_file``.
    """
    keys = sorted({key for key, _, _ in BUILTIN_TEMPLATES})
    if name in PROMPT_DATASETS:
        return PROMPT_DATASETS[name]
    if name in keys:
        return name
    fitting = sorted({key for key, names, _ in BUILTIN_TEMPLATES if sorted(names) == sorted(tasks)})
    if len(fitting) == 1:
        return fitting[0]
    raise ValueError(
        f"dataset {name!r}: no built-in prompt for tasks {list(tasks)} (built-in: {', '.join(keys)}); "
        "give the model a prompt_file"
    )


class DecoderFeaturizer:
    """Tokenizes examples for :class:`~lit_clf.models.DecoderGenerativeModule` and pads batches.

    Args:
        tokenizer: The decoder's tokenizer (its EOS ends every answer).
        tasks: Task specs; the template fixes the answer order.
        prompt_format: ``chat`` (the tokenizer's chat template), ``llama2`` (``[INST] ... [/INST]``) or ``raw``.
        shots: Few-shot examples per prompt (0 or 5 for the paper's prompts).
        prompt_file: A user template (see :func:`~lit_clf.data.prompts.load_template`) instead of the paper's.
        max_length: Most tokens of prompt + answer + EOS; texts are cut to fit.
        max_new_tokens: Generation budget per example; unset: :meth:`answer_budget`.
        dataset: Prompt key or DataModule ``dataset_name``; unset: the attached DataModule's.
        pool: Few-shot pool; unset: the attached DataModule's training split.
        seed: Seed of the few-shot draw; unset: the attached DataModule's ``seed`` (else 0).
        datamodule: Zero-argument callable returning the DataModule being featurized (or None); the model
            passes one reading its trainer, so the pool and dataset name are read when a split is featurized.
    """

    def __init__(
        self,
        tokenizer,
        tasks: Sequence[TaskSpec],
        prompt_format: PromptFormat = "chat",
        shots: int = 0,
        prompt_file: str | Path | None = None,
        max_length: int = 16384,
        max_new_tokens: int | None = None,
        dataset: str | None = None,
        pool: Sequence[Example] | None = None,
        seed: int | None = None,
        datamodule: Callable[[], Any] | None = None,
    ) -> None:
        if shots < 0:
            raise ValueError(f"shots must be >= 0, got {shots}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 or unset, got {max_new_tokens}")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
        if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"prompt_format='chat': tokenizer {tokenizer.name_or_path!r} has no chat template; use llama2 or raw"
            )
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r}: no EOS token; answers need one")
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.prompt_format = prompt_format
        self.shots = shots
        self.prompt_file = prompt_file
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.dataset = dataset
        self.pool = pool
        self.seed = seed
        self.datamodule = datamodule
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._encoder: PromptEncoder | None = None
        self._budgets: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by spawn pickle collate_fn: leave out the link to the model (its weights).
        return {**self.__dict__, "datamodule": None, "_encoder": None}

    # ----------------------------------------------------------------- prompt
    @property
    def encoder(self) -> PromptEncoder:
        """The prompt encoder of the last featurized split (built on first use)."""
        if self._encoder is None:
            self._encoder = self.build_encoder()
        return self._encoder

    def build_encoder(self) -> PromptEncoder:
        """A :class:`PromptEncoder` for the attached DataModule (its dataset name, training split and seed)."""
        datamodule = self.datamodule() if self.datamodule is not None else None
        names = [task.name for task in self.tasks]
        if self.prompt_file is not None:
            template = get_template("", names, self.shots, path=self.prompt_file)
        else:
            dataset = self.dataset or getattr(datamodule, "dataset_name", None)
            template = get_template(prompt_dataset(dataset, names), names, self.shots)
        pool = self.pool
        if pool is None:
            if self.shots and datamodule is None:
                raise ValueError(f"shots={self.shots}: no few-shot pool; attach a DataModule or pass pool")
            pool = datamodule.examples("train") if self.shots else ()
        seed = self.seed if self.seed is not None else getattr(datamodule, "seed", 0)
        return PromptEncoder(
            self.tokenizer, template, self.tasks, self.prompt_format, self.max_length, pool=pool, seed=seed
        )

    def parse(self, text: str, num_words: int) -> dict[str, ParsedAnswer]:
        """Read a decoded generation (see :func:`lit_clf.answers.parse_answer`); never raises."""
        keys = self.encoder.template.keys or None
        return parse_answer(text, self.encoder.tasks, keys, num_words=num_words)

    def answer_budget(self, num_words: int) -> int:
        """New tokens a generation for an input of ``num_words`` words may take (``max_new_tokens`` if set).

        Unset, it is the length of the longest gold answer the task set can produce for such an input, plus EOS
        and :data:`BUDGET_SLACK`: each sequence task answers with its longest label (in tokens) and each token
        task with its longest label repeated for every word. Only the input's word count is used, never its
        gold labels.
        """
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        key = num_words if any(task.kind == "token" for task in self.tasks) else 0
        if key not in self._budgets:
            labels = {task.name: self._longest_label(task) for task in self.tasks}
            worst = {t.name: labels[t.name] if t.kind == "sequence" else (labels[t.name],) * key for t in self.tasks}
            answer = self.encoder.answer_ids(Example("longest-answer", " ".join(["w"] * key), worst))
            self._budgets[key] = len(answer) + 1 + BUDGET_SLACK
        return self._budgets[key]

    def _longest_label(self, task: TaskSpec) -> str:
        def cost(label: str) -> int:
            return len(self.tokenizer(json.dumps(label, ensure_ascii=False), add_special_tokens=False)["input_ids"])

        return max(task.labels, key=cost)

    # -------------------------------------------------------------- featurize
    def featurize(self, examples: Sequence[Example], split: str, train: bool) -> list[dict[str, Any]]:
        """Training features (prompt + answer, loss on the answer) when ``train``, else generation features
        (the prompt alone), whatever the split: ``predict`` on the training split gets prompts."""
        self._encoder = self.build_encoder()  # the DataModule (pool, dataset) may differ from the last call
        self._budgets = {}
        if train:
            return [{"index": i, **self.encoder.encode_for_training(ex)} for i, ex in enumerate(examples)]
        return [self.generation_feature(i, ex) for i, ex in enumerate(examples)]

    def generation_feature(self, index: int, example: Example) -> dict[str, Any]:
        """Prompt ids, the gold label ids per task (metrics), the word count and the generation budget."""
        num_words = len(example.words)
        budget = self.answer_budget(num_words)
        feature = {"index": index, **self.encoder.encode_for_generation(example, budget)}
        feature.update(num_words=num_words, max_new_tokens=budget, gold={})
        for task in self.tasks:
            label2id = task.label2id
            gold = example.labels.get(task.name)
            if gold is None:  # unlabelled input (predict on new text): nothing to score
                feature["gold"][task.name] = -100 if task.kind == "sequence" else []
                continue
            values = [gold] if task.kind == "sequence" else list(gold)
            unknown = [value for value in values if value not in label2id]
            if unknown:
                raise ValueError(f"example {example.id}: label {unknown[0]!r} is not in task {task.name!r}'s label set")
            ids = [label2id[value] for value in values]
            feature["gold"][task.name] = ids[0] if task.kind == "sequence" else ids
        return feature

    def length(self, feature: dict[str, Any]) -> int:
        return len(feature["input_ids"])

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Right-padded ``input_ids``/``attention_mask``/``labels`` for training features; left-padded prompts
        with ``gold``, ``num_words`` and the batch's ``max_new_tokens`` for generation features."""
        index = torch.tensor([f["index"] for f in features])
        if "labels" in features[0]:
            keys = ("input_ids", "attention_mask", "labels")
            batch = pad_batch([{k: f[k] for k in keys} for f in features], self.pad_id, side="right")
            return {"index": index, **batch}
        batch = pad_batch([{k: f[k] for k in ("input_ids", "attention_mask")} for f in features], self.pad_id, "left")
        gold = {}
        for task in self.tasks:
            values = [f["gold"][task.name] for f in features]
            gold[task.name] = torch.tensor(values) if task.kind == "sequence" else values
        return {
            "index": index,
            **batch,
            "gold": gold,
            "num_words": [f["num_words"] for f in features],
            "max_new_tokens": max(f["max_new_tokens"] for f in features),
        }


__all__ = ["BUDGET_SLACK", "PROMPT_DATASETS", "DecoderFeaturizer", "prompt_dataset"]
