"""The answer loss under data parallel is the global batch's (issue: scale): N gloo processes x B rows give the loss
and gradients of 1 process x N*B rows, for token and task weighting (DDP's gradient average emulated)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_clf.data.base import DatasetInfo
from tests.helpers import data_parallel_trainer, make_decoder, toy_examples, toy_specs

INFO = DatasetInfo("massive", toy_examples("train-"), seed=0)
TASKS = {"token": ("slots",), "task": ("intent", "slots")}


def loss_and_grads(model_dir: str, weighting: str, world: int = 1, rank: int = 0) -> tuple[float, list[torch.Tensor]]:
    """The module's training loss on this process's share of the 8 toy rows, and its parameters' gradients averaged
    over the processes as DDP averages them."""
    module = make_decoder(model_dir, toy_specs(TASKS[weighting]), prompt_format="llama2", loss_weighting=weighting)
    features = module.featurizer.featurize(toy_examples(), train=True, info=INFO)
    batch = module.featurizer.collate(features[rank::world])  # rows of very different answer lengths per process

    if world > 1:
        module._trainer = data_parallel_trainer(world)
    loss = module.answer_loss(batch)
    loss.backward()
    grads = [p.grad.detach().clone() for p in module.parameters() if p.grad is not None]
    value = loss.detach().clone()
    if world > 1:
        for grad in [*grads, value]:
            dist.all_reduce(grad)
            grad /= world
    return float(value), grads


def _worker(rank: int, world: int, store: str, model_dir: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        results = {weighting: loss_and_grads(model_dir, weighting, world, rank) for weighting in TASKS}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_n_processes_give_the_loss_and_gradients_of_one(world, tiny_llama2_dir, tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), str(tiny_llama2_dir), str(out)), nprocs=world)
    results = torch.load(out, weights_only=True)
    for weighting in TASKS:
        loss, grads = results[weighting]
        want_loss, want_grads = loss_and_grads(str(tiny_llama2_dir), weighting)
        assert loss == pytest.approx(want_loss, abs=1e-6), weighting
        assert len(grads) == len(want_grads)
        for got, want in zip(grads, want_grads):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_the_shares_differ_from_a_mean_of_per_process_means(tiny_llama2_dir):
    """The case this guards: 8 rows with answers of different lengths, so the old mean of means is off."""
    module = make_decoder(str(tiny_llama2_dir), toy_specs(("slots",)), prompt_format="llama2")
    features = module.featurizer.featurize(toy_examples(), train=True, info=INFO)
    halves = [module.answer_loss(module.featurizer.collate(features[r::2])) for r in range(2)]
    whole = module.answer_loss(module.featurizer.collate(features))
    assert abs(float(sum(halves) / 2 - whole)) > 1e-4
