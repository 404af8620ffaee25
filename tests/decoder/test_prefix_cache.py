"""Evaluation with the KV cache of the prompt prefix every example shares: the same answers as without it."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from lit_clf.data.base import DatasetInfo
from lit_clf.decoder.kv_cache import CACHE_ARG, cache_kwargs, output_cache
from tests.helpers import make_decoder, toy_examples, toy_specs

INFO = DatasetInfo("massive", toy_examples("train-"), seed=0)


def answers(module, share: bool, cached: bool = True) -> list:
    module.featurizer.share_prefix = share
    features = module.featurizer.featurize(toy_examples("test-"), train=False, info=INFO)
    batch = module.featurizer.collate(features)
    if not cached:
        module.prefix_cache.for_batch = lambda model, batch: None  # the same layout, every prompt token recomputed
    module.prefix_cache.reset()
    return batch, [(row.text, {k: (a.value, a.valid) for k, a in row.answers.items()}) for row in module.decode(batch)]


CASES = [
    ("chat", ("intent",), "score", 0),
    ("chat", ("intent", "slots"), "constrained", 0),
    ("llama2", ("intent", "slots"), "free", 0),
    pytest.param("chat", ("intent",), "free", 5, marks=pytest.mark.slow),
    pytest.param("llama2", ("slots",), "constrained", 5, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("prompt_format", "tasks", "decoding", "shots"), CASES, ids=lambda v: str(v))
def test_cached_prefix_gives_the_same_answers(model_dirs, prompt_format, tasks, decoding, shots):
    module = make_decoder(
        model_dirs[prompt_format],
        toy_specs(tasks),
        prompt_format=prompt_format,
        decoding=decoding,
        shots=shots,
        max_length=2048,
    ).eval()
    plain_batch, plain = answers(module, share=False)
    shared_batch, shared = answers(module, share=True)
    _, uncached = answers(module, share=True, cached=False)
    assert plain_batch["prefix_length"] == 0 and shared_batch["prefix_length"] > 100
    assert shared == plain == uncached  # token for token (greedy) and the same labels (score)


def test_the_prefix_is_computed_once_per_evaluation_pass(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(("intent",)), prompt_format="chat", decoding="score").eval()
    module.featurizer.share_prefix = "auto"
    features = module.featurizer.featurize(toy_examples("test-"), train=False, info=INFO)
    batches = [module.featurizer.collate(features[:4]), module.featurizer.collate(features[4:])]
    prefix = batches[0]["prefix_length"]
    assert batches[1]["prefix_length"] == prefix and 100 < prefix < min(len(f["input_ids"]) for f in features)
    lengths = []
    hook = module.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    module.on_validation_epoch_start()
    for batch in batches:
        module.decode(batch)
    hook.remove()
    assert lengths.count(prefix) == 1  # the shared prefix ran once for the two batches
    assert all(length < batches[0]["input_ids"].shape[1] for length in lengths)  # no row reran it


def test_prefix_cache_under_training_is_dropped(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(("intent",)), prompt_format="chat")
    module.featurizer.share_prefix = "auto"
    batch = module.featurizer.collate(module.featurizer.featurize(toy_examples()[:2], train=False, info=INFO))
    with torch.no_grad():
        module.prefix_cache.for_batch(module.backbone, batch)
    assert module.prefix_cache.filled
    train = module.featurizer.collate(module.featurizer.featurize(toy_examples()[:2], train=True, info=INFO))
    module.training_step(train, 0)
    assert not module.prefix_cache.filled


def test_the_cache_goes_by_the_name_the_installed_transformers_takes():
    # `past_key_values` up to transformers 5.22, `cache` from 5.24: a wrong name is either a TypeError or, in
    # 5.24+, a deprecation warning on every batch (and an error from 6.0)
    assert CACHE_ARG in inspect.signature(LlamaForCausalLM.forward).parameters
    marker = object()
    assert output_cache(CausalLMOutputWithPast(**cache_kwargs(marker))) is marker
