"""The DataModule base shared by every dataset and by both model families.

A DataModule owns the raw examples and the task specs. How an example becomes tensors belongs to the model family:
the LightningModule hands its :class:`Featurizer` to the DataModule in its ``setup`` hook (in code:
``datamodule.featurizer = model.featurizer``). When a loader is asked for, the DataModule featurizes the split
once, passing the featurizer what it owns about the dataset (:class:`DatasetInfo`: its name, the training split as
the few-shot pool, the seed), and pads batches with the featurizer's ``collate``. Data flow one way, data ->
featurizer -> batches, so the same DataModule feeds an encoder with heads and a decoder trained on prompts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_clf.compat import batches_trained_this_epoch
from lit_clf.data.samplers import (
    EpochSampler,
    EvalBatches,
    LengthGroupedSampler,
    RankShard,
    ShuffledSampler,
)
from lit_clf.data.tasks import Example, SpanScheme, TaskKind, TaskSpec, collect_labels, select_tasks

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class DatasetInfo:
    """What a DataModule tells a featurizer about its dataset.

    Attributes:
        name: The DataModule's ``dataset_name`` (``massive``, ``newsgroups``): picks the paper's prompts.
        train: The training split (after ``max_examples``): the pool few-shot examples are drawn from.
        seed: The DataModule's seed (few-shot draws).
    """

    name: str
    train: Sequence[Example] = ()
    seed: int = 0


@runtime_checkable
class Featurizer(Protocol):
    """Turns raw examples into model inputs; supplied by the model family."""

    def featurize(
        self, examples: Sequence[Example], train: bool, info: DatasetInfo | None = None
    ) -> list[dict[str, Any]]:
        """Encode a whole split once. ``train`` asks for training features (loss targets), otherwise
        features for evaluation/prediction (the decoder's prompts without answers). Each feature keeps
        ``index`` (position in ``examples``)."""

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad a list of features into a batch (dynamic padding: to the longest in the batch)."""

    def length(self, feature: dict[str, Any]) -> int:
        """The feature's length in tokens, used to group batches of similar length."""

    def describe(self, feature: dict[str, Any]) -> str:
        """The feature as readable text (tokens and what the loss sees), for logs and notebooks."""


class FeatureDataset(Dataset):
    """A featurized split held in memory."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int | list[int]) -> dict[str, Any] | list[dict[str, Any]]:
        """One feature, or a batch's list of them (an :class:`~lit_clf.data.samplers.EvalBatches` item)."""
        if isinstance(index, list):
            return [self.features[i] for i in index]
        return self.features[index]


class ClassificationDataModule(L.LightningDataModule):
    """Base DataModule: raw examples per split, task specs, and dynamically padded loaders.

    Subclasses set ``available_tasks`` and implement :meth:`load_splits`.
    """

    #: Task name -> kind, for the tasks a dataset offers.
    available_tasks: ClassVar[dict[str, TaskKind]] = {}
    #: Short dataset name used in run names, tags and reports.
    dataset_name: ClassVar[str] = ""
    #: Span scheme of each token task (``runs`` when not listed; see :data:`lit_clf.data.tasks.SpanScheme`).
    task_schemes: ClassVar[dict[str, SpanScheme]] = {}
    #: What a complete copy holds, checked after reading unless ``verify`` is off: examples per split (``train+val``
    #: sums splits made from one upstream split) and distinct labels per task in a split. Empty: nothing known.
    known_sizes: ClassVar[dict[str, int]] = {}
    known_labels: ClassVar[dict[str, dict[str, int]]] = {}

    def __init__(
        self,
        tasks: list[str],
        data_dir: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        eval_token_budget: int | None = None,
        num_workers: int = 0,
        group_by_length: bool = True,
        max_examples: int | None = None,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        max_val_examples: int | None = None,
        predict_split: str = "test",
        seed: int = 42,
        verify: bool = True,
    ) -> None:
        """
        Args:
            tasks: Tasks to train and evaluate; one task is single-task, several make a multi-task run.
            data_dir: Folder holding the dataset files (or where they are downloaded to). Unset: the
                ``LIT_CLF_DATA`` environment variable, then ``~/.cache/lit_clf``.
            batch_size: Examples per training batch (per device).
            eval_batch_size: Examples per validation/test/predict batch at most; unset uses ``batch_size``.
            eval_token_budget: Tokens per validation/test/predict batch at most, as padded: rows x the longest
                example's tokens (for a decoder its prompt plus its answer budget, what the KV cache grows to).
                Batches come longest first, so the first hold few rows of the longest prompts and later ones up to
                ``eval_batch_size`` short ones: memory stays bounded by the budget, not by the longest prompt times
                the batch size. An example over the budget alone is a batch of one. Unset: ``eval_batch_size``
                rows whatever their length.
            num_workers: DataLoader worker processes (0 = load in the main process).
            group_by_length: Batch examples of similar token length together (shuffled mega-batches for
                training, longest-first for evaluation) so little compute goes to padding. Under several devices
                training groups the global batch (``batch_size`` x devices rows of similar length per step), so no
                device waits on a long example while the others hold short ones.
            max_examples: Keep at most this many examples per split (a seeded random subset), for smoke
                runs and CPU budgets. Unset uses every example.
            max_train_examples: Keep at most this many training examples (a seeded random subset; also the
                few-shot pool); overrides ``max_examples`` for the training split. A training budget: the
                validation and test scores stay on the full splits.
            max_eval_examples: Keep at most this many validation and test examples each (a seeded random
                subset), overriding ``max_examples`` for them, e.g. a quick dev subset for a learning-rate search.
            max_val_examples: Keep at most this many validation examples (a seeded random subset of the validation
                split, apart from the test split), overriding ``max_eval_examples`` for validation alone: a long
                decoder fit can afford generation on a few hundred dev examples at each validation while the test
                stays whole. (``trainer.limit_val_batches`` would keep the longest examples: evaluation batches come
                longest first.)
            predict_split: Split that ``lit-clf predict`` runs on: ``train``, ``val`` or ``test``.
            seed: Seed for subsets, derived splits and the length-grouped order.
            verify: Check that a known dataset was read whole (its examples per split and labels per task, e.g.
                MASSIVE: 11,514 / 2,033 / 2,974 utterances, 60 intents): a damaged archive or a partial copy is an
                error. ``false`` uses the files as they are (a deliberate subset or a patched copy).
        """
        super().__init__()
        self.tasks = select_tasks(tasks, self.available_tasks)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1 or unset, got {eval_batch_size}")
        if eval_token_budget is not None and eval_token_budget < 1:
            raise ValueError(f"eval_token_budget must be >= 1 or unset, got {eval_token_budget}")
        if predict_split not in SPLITS:
            raise ValueError(f"predict_split must be one of {', '.join(SPLITS)}, got {predict_split!r}")
        for name, value in [
            ("max_examples", max_examples),
            ("max_train_examples", max_train_examples),
            ("max_eval_examples", max_eval_examples),
            ("max_val_examples", max_val_examples),
        ]:
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or unset, got {value}")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.eval_token_budget = eval_token_budget
        self.num_workers = num_workers
        self.group_by_length = group_by_length
        self.max_examples = max_examples
        self.max_train_examples = max_train_examples
        self.max_eval_examples = max_eval_examples
        self.max_val_examples = max_val_examples
        self.predict_split = predict_split
        self.seed = seed
        self.verify = verify
        #: Where the data was read from (set by ``load_splits``), for messages.
        self.source: str | None = None
        self.featurizer: Featurizer | None = None
        self._full_splits: dict[str, list[Example]] | None = None
        self._splits: dict[str, list[Example]] | None = None
        self._task_specs: list[TaskSpec] | None = None
        self._datasets: dict[tuple[str, bool], tuple[Featurizer, FeatureDataset]] = {}

    # ----------------------------------------------------------------- raw data
    def load_splits(self) -> dict[str, list[Example]]:
        """Read (downloading if needed) the dataset: ``{"train": [...], "val": [...], "test": [...]}``."""
        raise NotImplementedError

    @property
    def full_splits(self) -> dict[str, list[Example]]:
        """Every raw example per split, read once."""
        if self._full_splits is None:
            splits = self.load_splits()
            for name in SPLITS:
                if not splits.get(name):
                    raise ValueError(f"{type(self).__name__}: split {name!r} is empty")
            if self.verify:
                self._verify(splits)
            self._full_splits = splits
        return self._full_splits

    def _verify(self, splits: dict[str, list[Example]]) -> None:
        """A ValueError when ``splits`` hold fewer (or more) examples or labels than :attr:`known_sizes` /
        :attr:`known_labels` say a complete copy has."""
        where = self.source or self.dataset_name
        fix = "repair or download the data again, or set data.init_args.verify false to use it as it is"
        for group, expected in self.known_sizes.items():
            found = sum(len(splits[name]) for name in group.split("+"))
            if found != expected:
                raise ValueError(
                    f"{where}: {group} has {found:,} examples, a complete copy {expected:,} (damaged or partial "
                    f"data); {fix}"
                )
        for group, tasks in self.known_labels.items():
            examples = [example for name in group.split("+") for example in splits[name]]
            for task, expected in tasks.items():
                labels = {label for example in examples for label in _as_labels(example.labels.get(task))}
                if len(labels) != expected:
                    raise ValueError(
                        f"{where}: {group} has {len(labels)} {task} labels, a complete copy {expected} (damaged or "
                        f"partial data); {fix}"
                    )

    @property
    def splits(self) -> dict[str, list[Example]]:
        """Raw examples per split, subsampled to ``max_train_examples`` / ``max_eval_examples`` / ``max_examples``."""
        if self._splits is None:
            self._splits = {
                name: self._subsample(examples, self.limit(name)) for name, examples in self.full_splits.items()
            }
        return self._splits

    def limit(self, split: str) -> int | None:
        """The most examples kept of ``split``: its own option (``max_train_examples`` for ``train``,
        ``max_val_examples`` then ``max_eval_examples`` for ``val``, ``max_eval_examples`` for ``test``), else
        ``max_examples``; None keeps every example."""
        options = {"train": (self.max_train_examples,), "val": (self.max_val_examples, self.max_eval_examples)}
        for own in (*options.get(split, (self.max_eval_examples,)), self.max_examples):
            if own is not None:
                return own
        return None

    def examples(self, split: str) -> list[Example]:
        """Raw examples of ``split`` (``train``, ``val``, ``test``)."""
        return self.splits[split]

    def _subsample(self, examples: list[Example], limit: int | None) -> list[Example]:
        if limit is None or len(examples) <= limit:
            return examples
        keep = sorted(random.Random(self.seed).sample(range(len(examples)), limit))
        return [examples[i] for i in keep]

    @property
    def task_specs(self) -> list[TaskSpec]:
        """Specs of the selected tasks (computed once); label sets are collected over every split (before any
        ``max_examples`` subsetting), sorted."""
        if self._task_specs is None:
            self._task_specs = self.build_task_specs()
        return self._task_specs

    def build_task_specs(self) -> list[TaskSpec]:
        """The selected tasks' specs, labels collected over every split; a subclass may decide otherwise."""
        everything = [example for examples in self.full_splits.values() for example in examples]
        specs = []
        for name, kind in self._selected():
            scheme = self.task_schemes.get(name, "runs")
            outside = TaskSpec(name, kind, (), scheme).outside
            specs.append(TaskSpec(name, kind, collect_labels(everything, name, kind, outside), scheme))
        return specs

    @property
    def info(self) -> DatasetInfo:
        """What featurizers are told about this dataset: its name, training split (few-shot pool) and seed."""
        return DatasetInfo(self.dataset_name, self.examples("train"), self.seed)

    def _selected(self) -> list[tuple[str, TaskKind]]:
        return [(name, self.available_tasks[name]) for name in self.tasks]

    # ------------------------------------------------------------- featurizing
    def setup(self, stage: str) -> None:
        """Read the raw splits (the model's ``setup`` then hands over its featurizer; loaders featurize)."""
        _ = self.splits

    def dataset(self, split: str, train: bool = False) -> FeatureDataset:
        """The featurized split: training features when ``train``, else evaluation ones. Featurized once per
        featurizer, on first use."""
        if self.featurizer is None:
            raise RuntimeError(
                f"{type(self).__name__} has no featurizer: use it with a lit_clf model in a Trainer (the model hands "
                "over its featurizer in setup), or set `datamodule.featurizer = model.featurizer`"
            )
        cached = self._datasets.get((split, train))
        if cached is None or cached[0] is not self.featurizer:
            features = self.featurizer.featurize(self.examples(split), train=train, info=self.info)
            cached = self._datasets[(split, train)] = (self.featurizer, FeatureDataset(features))
        return cached[1]

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.dataset(split, train)
        featurizer = self.featurizer
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if not train:
            costs = [featurizer.length(f) + f.get("max_new_tokens", 0) for f in dataset.features]
            budget = self.eval_token_budget
            batches = EvalBatches(costs, self.eval_batch_size, budget, world, rank, longest_first=self.group_by_length)
            return self._data_loader(dataset, batches, batch_size=None)
        lengths = [featurizer.length(feature) for feature in dataset.features] if self.group_by_length else []
        sampler: EpochSampler | RankShard = (
            LengthGroupedSampler(lengths, self.batch_size * world, seed=self.seed)  # grouped by the global batch
            if self.group_by_length
            else ShuffledSampler(len(dataset), seed=self.seed)
        )
        if world > 1:
            sampler = RankShard(sampler, world, rank)
        self._resume_sampler(sampler, world)
        return self._data_loader(dataset, sampler, batch_size=self.batch_size)

    def _data_loader(self, dataset: FeatureDataset, sampler: Sampler, batch_size: int | None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=self.featurizer.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # loaders never draw from the global RNG
        )

    # -------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        """Where training stands (saved in checkpoints): the epoch and the batches of it already trained on, so a
        run resumed mid-epoch trains on exactly the batches an uninterrupted run would."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {
            "epoch": trainer.current_epoch,
            "batches": batches_trained_this_epoch(trainer),
            "world_size": trainer.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_at = dict(state_dict) or None

    _resume_at: dict[str, Any] | None = None

    def _resume_sampler(self, sampler: EpochSampler | RankShard, world: int) -> None:
        """After :meth:`load_state_dict`: start the training order where the checkpoint left it (once), exactly on
        the number of processes it was saved from (each process's share of the order, :class:`RankShard`)."""
        if not self._resume_at:
            return
        epoch, batches, saved = (self._resume_at.get(key, 0) for key in ("epoch", "batches", "world_size"))
        self._resume_at = None
        if batches >= math.ceil(len(sampler) / self.batch_size):  # saved at the epoch's end: the next starts afresh
            epoch, batches = epoch + 1, 0
        if batches and max(saved, 1) != world:
            rank_zero_warn(
                f"resuming mid-epoch on {world} devices from a checkpoint of {saved}: epoch {epoch} restarts from "
                "its first batch (the order is shared out per process)"
            )
            batches = 0
        sampler.resume(epoch, batches * self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, train=False)


def split_off(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded split into (kept, held out); both keep the original order."""
    held = set(random.Random(seed).sample(range(len(examples)), max(1, round(fraction * len(examples)))))
    return [ex for i, ex in enumerate(examples) if i not in held], [ex for i, ex in enumerate(examples) if i in held]


def _as_labels(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
