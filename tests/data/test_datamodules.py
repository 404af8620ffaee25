"""The shared DataModules: splits, task specs, subsets and length-grouped batching."""

from __future__ import annotations

import pytest
import torch

from lit_clf.data import MassiveDataModule, NewsgroupsDataModule
from lit_clf.data.collate import pad_sequences
from lit_clf.data.samplers import EvalBatches, LengthGroupedSampler
from lit_clf.data.tasks import OTHER
from tests.helpers import ToyDataModule


def test_massive_task_specs_from_real_data(shared_data):
    data = MassiveDataModule(tasks=["intent", "slots"], data_dir=str(shared_data))
    intent, slots = data.task_specs
    assert (intent.name, intent.kind, intent.num_labels) == ("intent", "sequence", 60)
    assert (slots.name, slots.kind, slots.num_labels) == ("slots", "token", 56)
    assert slots.labels[0] == OTHER and list(slots.labels[1:]) == sorted(slots.labels[1:])
    sizes = {split: len(data.examples(split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 11514, "val": 2033, "test": 2974}


def test_newsgroups_val_split_is_seeded_and_disjoint(shared_data):
    data = NewsgroupsDataModule(tasks=["topic20", "topic7"], data_dir=str(shared_data), val_fraction=0.1)
    train, val, test = (data.examples(split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (10183, 1131, 7532)
    assert not {ex.id for ex in train} & {ex.id for ex in val}
    assert [spec.num_labels for spec in data.task_specs] == [20, 7]
    again = NewsgroupsDataModule(tasks=["topic7"], data_dir=str(shared_data), val_fraction=0.1)
    assert [ex.id for ex in again.examples("val")] == [ex.id for ex in val]
    other_seed = NewsgroupsDataModule(tasks=["topic7"], data_dir=str(shared_data), seed=7)
    assert [ex.id for ex in other_seed.examples("val")] != [ex.id for ex in val]


def test_max_examples_subsets_but_keeps_full_label_sets(shared_data):
    data = MassiveDataModule(tasks=["intent"], data_dir=str(shared_data), max_examples=10)
    assert [len(data.examples(s)) for s in ("train", "val", "test")] == [10, 10, 10]
    assert data.task_specs[0].num_labels == 60


def test_train_and_eval_limits_override_max_examples_per_split(shared_data):
    data = MassiveDataModule(
        tasks=["intent"], data_dir=str(shared_data), max_examples=10, max_train_examples=32, max_eval_examples=5
    )
    assert [len(data.examples(s)) for s in ("train", "val", "test")] == [32, 5, 5]
    assert len(data.info.train) == 32  # the few-shot pool is the training subset
    full_eval = MassiveDataModule(tasks=["intent"], data_dir=str(shared_data), max_train_examples=32)
    assert [len(full_eval.examples(s)) for s in ("val", "test")] == [2033, 2974]
    # seeded: the same subset for the same seed, another for another seed
    again = MassiveDataModule(tasks=["intent"], data_dir=str(shared_data), max_train_examples=32)
    assert [e.id for e in again.examples("train")] == [e.id for e in full_eval.examples("train")]
    other = MassiveDataModule(tasks=["intent"], data_dir=str(shared_data), max_train_examples=32, seed=1)
    assert [e.id for e in other.examples("train")] != [e.id for e in full_eval.examples("train")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": ["topic"]}, "tasks: unknown task 'topic'; available: intent, slots"),
        ({"tasks": []}, "tasks: give at least one task"),
        ({"tasks": ["intent"], "predict_split": "dev"}, "predict_split must be one of train, val, test"),
        ({"tasks": ["intent"], "batch_size": 0}, "batch_size must be >= 1"),
        ({"tasks": ["intent"], "max_eval_examples": 0}, "max_eval_examples must be >= 1 or unset, got 0"),
        ({"tasks": ["intent"], "locale": "xx-XX"}, "xx-XX"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MassiveDataModule(**kwargs)


def test_bad_newsgroups_options():
    with pytest.raises(ValueError, match="remove"):
        NewsgroupsDataModule(remove=["signature"])
    with pytest.raises(ValueError, match="val_fraction"):
        NewsgroupsDataModule(val_fraction=1.5)


def test_length_grouped_sampler_is_a_grouped_permutation():
    lengths = [(i * 37) % 101 for i in range(400)]
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=3, mega_batch_factor=5)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(400)) and sorted(second) == list(range(400))
    assert first != second  # a new order each epoch

    def mean_spread(order):
        batches = [order[i : i + 8] for i in range(0, len(order), 8)]
        return sum(max(lengths[j] for j in b) - min(lengths[j] for j in b) for b in batches) / len(batches)

    shuffled = torch.randperm(400, generator=torch.Generator().manual_seed(0)).tolist()
    # 40-example mega-batches over ~100 length values: about 20 per batch, against about 78 at random
    assert mean_spread(first) < 25 < 60 < mean_spread(shuffled)
    assert LengthGroupedSampler(lengths, 8, seed=3, mega_batch_factor=5).__iter__().__next__() == first[0]


def test_length_grouped_batches_stay_whole_with_a_short_batch():
    # 403 distinct lengths, 40-example mega-batches: the last mega-batch has 3 examples. Each loader batch (a run of
    # 8 in the order) must be one length group, longest first; a short batch in the middle would shift the rest.
    lengths = torch.randperm(403, generator=torch.Generator().manual_seed(1)).tolist()
    for epoch in range(3):
        order = list(LengthGroupedSampler(lengths, batch_size=8, seed=epoch, mega_batch_factor=5))
        batches = [order[i : i + 8] for i in range(0, len(order), 8)]
        assert [len(b) for b in batches] == [8] * 50 + [3]
        assert all([lengths[j] for j in b] == sorted((lengths[j] for j in b), reverse=True) for b in batches)


def test_eval_batches_longest_first_by_count():
    assert list(EvalBatches([3, 9, 1, 5], max_rows=2)) == [[1, 3], [0, 2]]
    assert list(EvalBatches([3, 9, 1, 5], max_rows=3, longest_first=False)) == [[0, 1, 2], [3]]


def test_eval_batches_within_a_token_budget():
    # Budget 20: rows x the batch's longest cost <= 20; the 25-token example alone is over it, a batch of one.
    costs = [25, 10, 10, 9, 4, 4, 4, 4, 4, 4, 3]
    batches = list(EvalBatches(costs, max_rows=4, token_budget=20))
    assert batches == [[0], [1, 2], [3, 4], [5, 6, 7, 8], [9, 10]]
    assert all(len(b) == 1 or len(b) * max(costs[i] for i in b) <= 20 for b in batches)


def test_eval_batches_equal_counts_on_every_rank_without_repeats():
    # 5 batches by count over 3 ranks: the widest batches split until 6; every example read exactly once.
    costs = list(range(17, 0, -1))
    shares = [list(EvalBatches(costs, max_rows=4, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shares] == [2, 2, 2]
    assert sorted(i for s in shares for b in s for i in b) == list(range(17))
    assert [len(b) for s in zip(*shares) for b in s] == [2, 2, 4, 4, 4, 1]  # step 1 holds the longest rows
    # Fewer examples than ranks: the last is repeated (predictions drop repeats by index), counts stay equal.
    assert [list(EvalBatches([5, 3], max_rows=8, num_replicas=3, rank=r)) for r in range(3)] == [[[0]], [[1]], [[1]]]


def test_eval_loader_reads_budgeted_batches(tiny_roberta_dir):
    from lit_clf.encoder.module import EncoderSeqTokenModule

    data = ToyDataModule(tasks=["intent"], eval_batch_size=64, eval_token_budget=30)
    model = EncoderSeqTokenModule(backbone=str(tiny_roberta_dir), tasks=data.task_specs, pretrained=False)
    data.featurizer = model.featurizer
    data.setup("test")
    batches = list(data.test_dataloader())
    rows = [len(b["index"]) for b in batches]
    assert sum(rows) == len(data.examples("test")) and len(set(rows)) > 1
    assert all(n == 1 or n * b["input_ids"].shape[1] <= 30 for n, b in zip(rows, batches))
    with pytest.raises(ValueError, match="eval_token_budget must be >= 1 or unset, got 0"):
        ToyDataModule(tasks=["intent"], eval_token_budget=0)


def test_padding():
    left = pad_sequences([[1, 2], [3]], pad=0, side="left")
    assert torch.equal(left, torch.tensor([[1, 2], [0, 3]]))
    assert torch.equal(pad_sequences([[1, 2], [3]], pad=-100), torch.tensor([[1, 2], [3, -100]]))


def test_loader_needs_a_featurizer():
    data = ToyDataModule(tasks=["intent"])
    data.setup("fit")  # reads the raw splits; featurizing waits for the model's featurizer
    with pytest.raises(RuntimeError, match="has no featurizer.*datamodule.featurizer = model.featurizer"):
        data.train_dataloader()


def _steps(lengths, batch_size, world, seed=3):
    """Per optimizer step: the indices each of ``world`` processes reads (RankShard over the global grouping)."""
    from lit_clf.data.samplers import RankShard

    shards = [
        list(RankShard(LengthGroupedSampler(lengths, batch_size * world, seed=seed), world, r)) for r in range(world)
    ]
    steps = len(shards[0]) // batch_size + (len(shards[0]) % batch_size > 0)
    return [[shard[s * batch_size : (s + 1) * batch_size] for shard in shards] for s in range(steps)]


@pytest.mark.parametrize("world", [2, 4])
def test_several_processes_read_the_global_batch_grouping(world):
    """Each step's rows over all processes are one group of the grouping by the global batch (batch x world): what
    one process with the whole batch reads, shared out."""
    lengths = [(i * 37) % 101 + 1 for i in range(96)]
    batch = 3
    whole = list(LengthGroupedSampler(lengths, batch * world, seed=3))
    for step, parts in enumerate(_steps(lengths, batch, world)):
        assert all(len(part) == batch for part in parts)  # every process the same count (96 = 3 x 4 x 8)
        assert sorted(i for part in parts for i in part) == sorted(
            whole[step * batch * world : (step + 1) * batch * world]
        )
    # grouped: within a step the lengths are close, across steps they vary
    spans = [
        max(lengths[i] for p in parts for i in p) - min(lengths[i] for p in parts for i in p)
        for parts in _steps(lengths, batch, world)
    ]
    assert max(spans) < 30 and max(lengths) - min(lengths) == 100


def test_a_rank_shard_is_padded_to_equal_counts_and_resumes_exactly():
    from lit_clf.data.samplers import RankShard

    lengths = list(range(1, 22))  # 21 rows on 2 processes: one repeated
    shards = [RankShard(LengthGroupedSampler(lengths, 4, seed=0, mega_batch_factor=1), 2, r) for r in range(2)]
    first = [list(shard) for shard in shards]
    assert [len(f) for f in first] == [11, 11] and len(set(first[0]) | set(first[1])) == 21
    second = [list(shard) for shard in shards]  # the next epoch: a new order
    assert second != first
    for r, shard in enumerate(shards):  # resumed in epoch 1 after 2 of each process's rows
        shard.resume(1, 2)
        assert list(shard) == second[r][2:]
    from torch.utils.data import DistributedSampler

    assert isinstance(shards[0], DistributedSampler)  # Lightning leaves it unwrapped (no reshuffle)


def test_max_val_examples_shrinks_validation_alone():
    from tests.helpers import ToyDataModule

    data = ToyDataModule(tasks=["intent"], max_val_examples=3, max_eval_examples=5)
    assert [data.limit(split) for split in ("train", "val", "test")] == [None, 3, 5]
    assert len(data.examples("val")) == 3 and len(data.examples("test")) == 5 and len(data.examples("train")) == 8
    assert [ToyDataModule(tasks=["intent"], max_examples=4).limit(s) for s in ("train", "val", "test")] == [4, 4, 4]
    with pytest.raises(ValueError, match="max_val_examples must be >= 1"):
        ToyDataModule(tasks=["intent"], max_val_examples=0)
