"""Examples -> decoder inputs: masked prompt + answer for training, left-padded prompts for generation.

The prompt itself (template, format, few-shot draw, token budgets, answer mask) is
:class:`~lit_clf.prompting.encoding.PromptEncoder`'s job; this module picks its inputs and pads batches:

* training (``train=True``): ``encode_for_training`` features (labels -100 except answer + EOS), padded on the RIGHT;
* evaluation and prediction (any split): prompt ids only, the gold label ids for the metrics, the number of
  input words and a generation budget, padded on the LEFT so every row's new tokens follow its prompt directly.

Which prompt: a user ``prompt_file``, else the paper's for the dataset (the DataModule's ``dataset_name``, passed
in :class:`~lit_clf.data.base.DatasetInfo`), task set and number of shots. Few-shot examples come from the
DataModule's training split (after ``max_examples``), never the query itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from lit_clf.data.base import DatasetInfo
from lit_clf.data.collate import pad_batch
from lit_clf.data.tasks import IGNORE_INDEX, Example, TaskSpec
from lit_clf.decoder.loss import LOSS_WEIGHTINGS, LossWeighting
from lit_clf.decoder.packing import pack, packed_saving, shared_prompt_length
from lit_clf.prompting.encoding import PromptEncoder, ShotsDraw
from lit_clf.prompting.formats import PROMPT_FORMATS, PromptFormat
from lit_clf.prompting.options import check_prompt_options, check_shot_pool, prompt_template
from lit_clf.prompting.scoring import collate_gold, gold_ids
from lit_clf.prompting.templates import PromptTemplate

#: Tokens added to the estimated longest answer (see :meth:`DecoderFeaturizer.answer_budget`): re-tokenizing a
#: label in another context can take a token more or less.
BUDGET_SLACK = 4


class DecoderFeaturizer:
    """Tokenizes examples for :class:`~lit_clf.decoder.DecoderGenerativeModule` and pads batches.

    Args:
        tokenizer: The decoder's tokenizer (its EOS ends every answer).
        tasks: Task specs; the template fixes the answer order.
        prompt_format: ``chat`` (the tokenizer's chat template), ``llama2`` (``[INST] ... [/INST]``) or ``raw``.
        shots: Few-shot examples per prompt (0 or 5 for the paper's prompts).
        prompt_file: A user template (see :func:`~lit_clf.prompting.templates.load_template`) instead of the paper's.
        max_length: Most tokens of prompt + answer + EOS; texts are cut to fit.
        max_new_tokens: Generation budget per example; unset: :meth:`answer_budget`.
        shots_draw: ``per_example`` or ``fixed`` few-shot draws (:func:`~lit_clf.prompting.encoding.select_shots`).
        share_prefix: Collate training batches as one packed sequence (:mod:`lit_clf.decoder.packing`): ``True``,
            ``False`` (right-padded rows) or ``auto`` (when it saves ``share_prefix_min_saving`` of the tokens).
        prompt_style: Answer style of the generic prompt (``serial``, ``json``; unset: serial for one task, json for
            several); the paper's prompts and prompt files fix their own.
        label_descriptions: Task -> label -> description, written into the generic prompt.
        loss_weighting: ``token`` or ``task``: training features then carry ``answer_task``
            (:data:`LOSS_WEIGHTINGS`).

    The dataset (its name, few-shot pool and seed) comes with each :meth:`featurize` call, from the DataModule.
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
        shots_draw: ShotsDraw = "per_example",
        share_prefix: bool | Literal["auto"] = False,
        share_prefix_min_saving: float = 0.2,
        prompt_style: str | None = None,
        label_descriptions: Mapping[str, Mapping[str, str]] | None = None,
        loss_weighting: LossWeighting = "token",
    ) -> None:
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting: expected one of {', '.join(LOSS_WEIGHTINGS)}, got {loss_weighting!r}")
        if loss_weighting == "task" and not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"loss_weighting='task': tokenizer {tokenizer.name_or_path!r} gives no character offsets (not a fast "
                "tokenizer); use loss_weighting='token'"
            )
        check_prompt_options(tasks, shots, shots_draw, prompt_style, label_descriptions)
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
        if share_prefix not in (True, False, "auto"):
            raise ValueError(f"share_prefix: expected true, false or auto, got {share_prefix!r}")
        if not 0.0 <= share_prefix_min_saving <= 1.0:
            raise ValueError(f"share_prefix_min_saving: expected a fraction in [0, 1], got {share_prefix_min_saving}")
        self.loss_weighting = loss_weighting
        self.prompt_style = prompt_style
        self.label_descriptions = label_descriptions
        self.shots_draw = shots_draw
        self.share_prefix = share_prefix
        self.share_prefix_min_saving = share_prefix_min_saving
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.prompt_format = prompt_format
        self.shots = shots
        self.prompt_file = prompt_file
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.info: DatasetInfo | None = None
        self._encoder: PromptEncoder | None = None
        self._budgets: dict[int, int] = {}
        self._ranked: dict[str, list[str]] = {}  # task name -> labels, the most tokens first

    # ----------------------------------------------------------------- prompt
    def template(self, dataset: str | None) -> PromptTemplate:
        """The prompt for ``dataset`` (:func:`prompt_template`)."""
        return prompt_template(
            dataset, self.tasks, self.shots, self.prompt_file, self.prompt_style, self.label_descriptions
        )

    def use(self, info: DatasetInfo | None) -> PromptEncoder:
        """The prompt encoder for a dataset (its name picks the paper's prompt; its training split is the few-shot
        pool); built once per dataset. None reuses the last dataset's, or builds one without a pool."""
        if info is None and self._encoder is not None:
            return self._encoder
        info = info or DatasetInfo(name="")
        same = self.info is not None and (info.name, id(info.train), info.seed) == (
            self.info.name,
            id(self.info.train),
            self.info.seed,
        )
        if not same or self._encoder is None:
            check_shot_pool(self.shots, info)
            template = self.template(info.name or None)
            self._encoder = PromptEncoder(
                self.tokenizer,
                template,
                self.tasks,
                self.prompt_format,
                self.max_length,
                info.train,
                info.seed,
                self.shots_draw,
            )
            self.info, self._budgets = info, {}
        return self._encoder

    @property
    def encoder(self) -> PromptEncoder:
        """The prompt encoder of the last featurized dataset."""
        return self.use(None)

    def answer_budget(self, words: Sequence[str]) -> int:
        """New tokens a generation for an input of these whitespace ``words`` may take (``max_new_tokens`` if set).

        Unset, it is the length of the longest gold answer the task set can produce for such an input, plus EOS
        and :data:`BUDGET_SLACK`: each sequence task answers with its longest label (in tokens) and each token
        task with its longest label repeated for every word; an ``inline`` token answer writes the words
        themselves, each in a span of its own with one of the two longest labels. Only the input's words are
        used (their count, unless inline), never its gold labels.
        """
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        token = any(task.kind == "token" for task in self.tasks)
        if token and self.encoder.template.token_format == "inline":  # depends on the words: not kept
            return self._budget(" ".join(words), inline=True)
        key = len(words) if token else 0
        if key not in self._budgets:
            self._budgets[key] = self._budget(" ".join(["w"] * key), inline=False)
        return self._budgets[key]

    def _budget(self, text: str, inline: bool) -> int:
        """Tokens of the longest answer for an input ``text``, plus EOS and :data:`BUDGET_SLACK`."""
        n = len(text.split())
        worst = {task.name: self._worst_value(task, n, inline) for task in self.tasks}
        return len(self.encoder.answer_ids(Example("longest-answer", text, worst))) + 1 + BUDGET_SLACK

    def _worst_value(self, task: TaskSpec, num_words: int, inline: bool) -> str | tuple[str, ...]:
        longest = self._longest_labels(task)
        if task.kind == "sequence":
            return longest[0]
        if task.kind == "multilabel":
            return task.labels
        if not inline:
            return (longest[0],) * num_words
        if task.scheme == "bio":  # B- tags only: one span per word
            return (next(label for label in longest if label.startswith("B-")),) * num_words
        # alternating the two longest labels: one span per word (equal neighbours would make one span)
        pair = [label for label in longest if label != task.outside][:2] or [task.outside]
        return tuple(pair[i % len(pair)] for i in range(num_words))

    def _longest_labels(self, task: TaskSpec) -> list[str]:
        """``task``'s labels, the most tokens first (ranked once per task: budgets are asked for per example)."""
        if task.name not in self._ranked:

            def cost(label: str) -> int:
                return len(self.tokenizer(json.dumps(label, ensure_ascii=False), add_special_tokens=False)["input_ids"])

            self._ranked[task.name] = sorted(task.labels, key=cost, reverse=True)
        return self._ranked[task.name]

    # -------------------------------------------------------------- featurize
    def featurize(
        self, examples: Sequence[Example], train: bool, info: DatasetInfo | None = None
    ) -> list[dict[str, Any]]:
        """Training features (prompt + answer, loss on the answer) when ``train``, else generation features
        (the prompt alone), whatever the split: ``predict`` on the training split gets prompts.

        Args:
            examples: The split's examples.
            train: Training features or generation features.
            info: The DataModule's dataset name, training split (few-shot pool) and seed; None: the last ones.
        """
        self.use(info)
        if train:
            by_task = self.loss_weighting == "task"
            return [self.training_feature(i, ex, by_task) for i, ex in enumerate(examples)]
        features = [self.generation_feature(i, ex) for i, ex in enumerate(examples)]
        prefix = shared_prompt_length([f["input_ids"] for f in features]) if self.share_prefix is not False else 0
        for feature in features:
            feature["prefix_length"] = prefix
        return features

    def training_feature(self, index: int, example: Example, answer_tasks: bool) -> dict[str, Any]:
        """Prompt + answer ids, the answer-only labels, and whether the texts were cut to fit ``max_length``."""
        feature = {"index": index, **self.encoder.encode_for_training(example, answer_tasks)}
        feature["truncated"] = self.encoder.last_cut
        return feature

    def generation_feature(self, index: int, example: Example) -> dict[str, Any]:
        """Prompt ids, the gold label ids per task (metrics), the word count, the generation budget, and whether
        the texts were cut to fit ``max_length``."""
        words = tuple(example.words)
        budget = self.answer_budget(words)
        feature = {"index": index, **self.encoder.encode_for_generation(example, budget)}
        feature["truncated"] = self.encoder.last_cut
        feature.update(words=words, num_words=len(words), max_new_tokens=budget, gold=gold_ids(example, self.tasks))
        if example.labels:  # the gold answer + EOS after the prompt: the teacher-forced val/loss
            feature["answer_ids"] = self.encoder.answer_ids(example) + [self.tokenizer.eos_token_id]
        return feature

    def _packs(self, features: list[dict[str, Any]]) -> bool:
        if self.share_prefix == "auto":
            return packed_saving(features) >= self.share_prefix_min_saving
        return bool(self.share_prefix)

    def length(self, feature: dict[str, Any]) -> int:
        return len(feature["input_ids"])

    def describe(self, feature: dict[str, Any]) -> str:
        """The exact text the model reads; for a training feature the loss span (answer + EOS) between
        ``[[`` and ``]]``."""
        ids, labels = feature["input_ids"], feature.get("labels")
        start = len(ids) if labels is None else next(i for i, v in enumerate(labels) if v != IGNORE_INDEX)

        def decode(part: list[int]) -> str:
            return self.tokenizer.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False)

        text = decode(ids[:start])
        return text if start == len(ids) else f"{text}[[{decode(ids[start:])}]]"

    def show(self, example: Example, train: bool = True, info: DatasetInfo | None = None) -> str:
        """:meth:`describe` of one example's feature: ``print(model.featurizer.show(example))``."""
        return self.describe(self.featurize([example], train=train, info=info)[0])

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Training features: right-padded ``input_ids``/``attention_mask``/``labels``, or one packed sequence
        (``share_prefix``). Generation features: the evaluation split's shared prompt prefix (``prefix_length``
        tokens, the same in every batch of the split, so its KV cache is computed once per evaluation pass), then
        the rest of each prompt left-padded; with ``gold``, ``words``, ``num_words`` and the batch's
        ``max_new_tokens``."""
        index = torch.tensor([f["index"] for f in features])
        truncated = torch.tensor([bool(f.get("truncated", False)) for f in features])
        if "labels" in features[0]:
            if self._packs(features):
                return {"index": index, "truncated": truncated, **pack(features)}
            keys = [k for k in ("input_ids", "attention_mask", "labels", "answer_task") if k in features[0]]
            batch = pad_batch([{k: f[k] for k in keys} for f in features], self.pad_id, side="right")
            return {"index": index, "truncated": truncated, **batch}
        prefix = min(f.get("prefix_length", 0) for f in features)
        rows = [
            {"input_ids": f["input_ids"][prefix:], "attention_mask": f["attention_mask"][prefix:]} for f in features
        ]
        batch = pad_batch(rows, self.pad_id, "left")
        if prefix:  # [shared prompt prefix | left-padded rest]: positions and masked pads as plain left padding
            shared = torch.tensor(features[0]["input_ids"][:prefix]).expand(len(features), prefix)
            batch["input_ids"] = torch.cat([shared, batch["input_ids"]], dim=1)
            batch["attention_mask"] = torch.cat([torch.ones_like(shared), batch["attention_mask"]], dim=1)
        gold = collate_gold(features, self.tasks)
        out = {
            "index": index,
            "truncated": truncated,
            **batch,
            "gold": gold,
            "words": [f["words"] for f in features],
            "num_words": [f["num_words"] for f in features],
            "max_new_tokens": max(f["max_new_tokens"] for f in features),
            "prefix_length": prefix,
        }
        if all("answer_ids" in f for f in features):  # prompt + gold answer, right-padded: the answer's loss
            rows = [
                {
                    "input_ids": f["input_ids"] + f["answer_ids"],
                    "attention_mask": [1] * (len(f["input_ids"]) + len(f["answer_ids"])),
                    "labels": [IGNORE_INDEX] * len(f["input_ids"]) + f["answer_ids"],
                }
                for f in features
            ]
            out["teacher_forced"] = pad_batch(rows, self.pad_id, side="right")
        return out


__all__ = ["BUDGET_SLACK", "DecoderFeaturizer"]
