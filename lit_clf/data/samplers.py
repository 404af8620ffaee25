"""The orders in which a DataModule's loaders read a split: per epoch and resumable mid-epoch for training
(shuffled, or length-grouped for little padding; under several processes grouped by the global batch and shared out
by :class:`RankShard`), and evaluation batches, longest first within a token budget (:class:`EvalBatches`)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import DistributedSampler, Sampler


class EpochSampler(Sampler[int]):
    """Training order: a new permutation each epoch, drawn from ``seed`` and the epoch alone (no global RNG), and
    resumable mid-epoch: :meth:`resume` makes the next pass an epoch's order less the indices already trained on.
    Subclasses give the order (:meth:`order`)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self._skip = 0

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, skip: int) -> None:
        """Make the next pass epoch ``epoch``'s order without its first ``skip`` indices."""
        self.epoch, self._skip = epoch, skip

    def order(self, rng: random.Random) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        order = self.order(random.Random(self.seed + self.epoch))
        self.epoch += 1  # a fresh order next epoch even when nobody calls set_epoch
        skip, self._skip = self._skip, 0
        return iter(order[skip:])


class ShuffledSampler(EpochSampler):
    """A uniformly shuffled order per epoch."""

    def order(self, rng: random.Random) -> list[int]:
        order = list(range(self.size))
        rng.shuffle(order)
        return order


class LengthGroupedSampler(EpochSampler):
    """Shuffled order in which every run of ``batch_size`` indices has similar lengths.

    As in Hugging Face's sampler of the same name: shuffle, cut into mega-batches of
    ``mega_batch_factor * batch_size``, sort each by length (longest first) and shuffle the order of
    the batches, so padding is small yet batches still vary. The one short batch (the end of the last
    mega-batch) goes last: anywhere else it would shift every later batch across two length groups. Under DDP
    Lightning wraps this sampler and hands index ``i`` to rank ``i % world_size``: neighbouring indices have
    similar lengths, so each rank's batches stay grouped. A new permutation is drawn each epoch from ``seed``
    and the epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, mega_batch_factor: int = 50) -> None:
        super().__init__(len(lengths), seed)
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.mega_batch_factor = mega_batch_factor

    def order(self, rng: random.Random) -> list[int]:
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        mega = self.mega_batch_factor * self.batch_size
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=self.lengths.__getitem__, reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        batches.sort(key=lambda batch: len(batch) < self.batch_size)  # stable: only the short batch moves
        return [index for batch in batches for index in batch]


class EvalBatches(DistributedSampler):
    """Evaluation batches (validation, test, predict): each an index list, longest first, shared out among
    ``num_replicas`` processes with the same number of batches on every one.

    A batch holds at most ``max_rows`` examples and, with a ``token_budget``, at most that many tokens as it is
    padded: rows x the longest ``cost`` in it (the decoder's prompt plus its answer budget, which the KV cache grows
    to). So a 20NG five-shot test starts with a few rows of 8k-token prompts and ends with many short ones, instead
    of a fixed count sized for neither. An example over the budget on its own is a batch of one.

    Batch ``k`` of the whole order goes to process ``k % num_replicas``, so the processes' batches of a step have
    similar lengths. The batch count is made a multiple of ``num_replicas`` by splitting the batches with the most
    rows (each example is still read once); only when there are fewer examples than that count are some repeated
    (predictions drop the repeats by index). A ``DistributedSampler`` whose items are batches, so Lightning does
    not wrap it in its own: the loader reads it with ``batch_size=None`` and a dataset indexed by lists.
    """

    def __init__(
        self,
        costs: Sequence[int],
        max_rows: int,
        token_budget: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        longest_first: bool = True,
    ) -> None:
        Sampler.__init__(self)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        order = sorted(range(len(costs)), key=costs.__getitem__, reverse=True) if longest_first else range(len(costs))
        batches: list[list[int]] = []
        for index in order:
            batch = batches[-1] if batches else None
            rows = len(batch) + 1 if batch is not None else 1
            widest = max([costs[i] for i in batch or ()] + [costs[index]])
            if batch is None or rows > max_rows or (token_budget is not None and rows * widest > token_budget):
                batches.append([index])
            else:
                batch.append(index)
        while len(batches) % num_replicas:
            widest = max(range(len(batches)), key=lambda k: len(batches[k]), default=None)
            if widest is None or len(batches[widest]) < 2:
                batches.append(list(batches[-1]))  # fewer examples than processes: repeat
                continue
            batch = batches[widest]
            batches[widest : widest + 1] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
        self.batches = batches
        self.mine = batches[rank::num_replicas]
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.drop_last, self.seed, self.epoch = False, False, 0, 0  # DistributedSampler's attributes
        self.num_samples = len(self.mine)
        self.total_size = len(batches)

    def __len__(self) -> int:
        return len(self.mine)

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(batch) for batch in self.mine])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class RankShard(DistributedSampler):
    """One process's share of a training order over ``num_replicas`` processes (DDP, FSDP).

    The order of ``sampler`` (for all processes) is padded, by repeating its start, to a multiple of
    ``num_replicas``; this process reads positions ``rank``, ``rank + num_replicas``, ... of it. So each run of
    ``batch_size x num_replicas`` consecutive indices, one optimizer step of the whole job, is split across the
    processes: with a :class:`LengthGroupedSampler` grouped by that global batch, every process's batch of a step
    has the lengths of the others' (no step waits on one long prompt among short ones).

    A ``DistributedSampler``, so Lightning does not wrap it in its own (which would shuffle the order again and
    undo the grouping); resumable mid-epoch exactly (:meth:`resume`), on the same number of processes.
    """

    def __init__(self, sampler: EpochSampler, num_replicas: int, rank: int) -> None:
        Sampler.__init__(self)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.sampler, self.num_replicas, self.rank = sampler, num_replicas, rank
        self.num_samples = -(-len(sampler) // num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle, self.drop_last, self.seed = True, False, sampler.seed  # DistributedSampler's attributes
        self._skip = 0

    def __len__(self) -> int:
        return self.num_samples

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def resume(self, epoch: int, skip: int) -> None:
        """Make the next pass epoch ``epoch``'s share without its first ``skip`` indices (this process's)."""
        self.sampler.resume(epoch, 0)
        self._skip = skip

    def __iter__(self) -> Iterator[int]:
        order = list(self.sampler)
        order += order[: self.total_size - len(order)]
        skip, self._skip = self._skip, 0
        return iter(order[self.rank + skip * self.num_replicas : self.total_size : self.num_replicas])
