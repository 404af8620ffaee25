"""Shared-prefix training batches: exact layout and mask, and loss and gradients equal to the per-row batch."""

from __future__ import annotations

import pytest
import torch

from lit_clf.data.base import DatasetInfo
from lit_clf.data.tasks import IGNORE_INDEX
from lit_clf.decoder.packing import block_mask, common_prefix_length, pack, packed_saving, segment_mask
from lit_clf.prompting.encoding import select_shots
from tests.helpers import make_decoder, toy_examples, toy_specs

X = IGNORE_INDEX


def test_hand_made_batch_exact_layout_mask_and_positions():
    features = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [X, X, X, X, 9]},
        {"input_ids": [5, 6, 7, 1, 2, 3], "labels": [X, X, X, X, 2, 3]},
        {"input_ids": [5, 6, 4, 4], "labels": [X, X, X, 4]},
    ]
    # Common prefix 5 6 7 is capped to 2 by row 2 (first label at 3: it must keep position 2 unshared).
    assert common_prefix_length([f["input_ids"] for f in features], [f["labels"] for f in features]) == 2
    packed = pack(features)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9, 7, 1, 2, 3, 4, 4]]
    assert packed["labels"].tolist() == [[X, X, X, X, 9, X, X, 2, 3, X, 4]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 2, 3, 4, 5, 2, 3]]
    assert packed["segments"].tolist() == [[0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3]]
    assert packed["rows"] == 3 and packed["shared_prefix_frac"] == pytest.approx(1 - 11 / 15)
    mask = segment_mask(packed["segments"])[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    ]
    # Padded: 3 x 6 = 18 tokens; packed: 11.
    assert packed_saving(features) == pytest.approx(1 - 11 / 18)


def test_rows_sharing_nothing_pack_without_padding():
    features = [{"input_ids": [1, 2, 3], "labels": [X, X, 3]}, {"input_ids": [4, 5], "labels": [X, 5]}]
    packed = pack(features)
    assert packed["input_ids"].tolist() == [[1, 2, 3, 4, 5]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert packed["segments"].tolist() == [[1, 1, 1, 2, 2]]


def test_fixed_shots_are_one_draw_that_never_holds_the_query():
    pool = toy_examples("train-")
    draws = [select_shots(query, pool, 5, seed=3, draw="fixed") for query in pool]
    shared = [[shot.id for shot in draw] for draw in draws]
    assert all(query.id not in ids for query, ids in zip(pool, shared))
    common = max(shared, key=shared.count)
    assert sum(ids == common for ids in shared) == len(pool) - 5  # only the 5 drawn queries differ


def loss_and_grads(module, batch):
    module.zero_grad()
    loss = module.answer_loss(batch)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same_loss_and_grads(module, features):
    padded = module.featurizer
    share = padded.share_prefix
    try:
        padded.share_prefix = False
        reference = loss_and_grads(module, padded.collate(features))
        padded.share_prefix = True
        batch = padded.collate(features)
        assert "segments" in batch
        shared = loss_and_grads(module, batch)
    finally:
        padded.share_prefix = share
    torch.testing.assert_close(shared[0], reference[0], rtol=1e-5, atol=1e-6)
    assert shared[1].keys() == reference[1].keys() and reference[1]
    for name, grad in reference[1].items():
        torch.testing.assert_close(shared[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    return batch


SLOW = pytest.mark.slow
# (format, tasks, shots, draw, attention): every format, task kind, shot setting and kernel in the default suite.
CASES = [
    ("chat", ("intent",), 0, "per_example", "sdpa"),
    ("chat", ("slots",), 5, "per_example", "eager"),
    ("llama2", ("intent",), 5, "fixed", "sdpa"),
    ("llama2", ("intent", "slots"), 5, "per_example", "sdpa"),
    ("raw", ("slots",), 0, "per_example", "eager"),
    pytest.param("chat", ("intent", "slots"), 0, "per_example", "sdpa", marks=SLOW),
    pytest.param("chat", ("intent", "slots"), 0, "per_example", "eager", marks=SLOW),
    pytest.param("chat", ("intent",), 0, "per_example", "eager", marks=SLOW),
    pytest.param("llama2", ("intent",), 5, "fixed", "eager", marks=SLOW),
    pytest.param("raw", ("slots",), 0, "per_example", "sdpa", marks=SLOW),
]


@pytest.mark.parametrize(("prompt_format", "tasks", "shots", "draw", "attention"), CASES, ids=lambda v: str(v))
def test_shared_prefix_equals_per_row(model_dirs, prompt_format, tasks, shots, draw, attention):
    model_dir = model_dirs["chat" if prompt_format == "chat" else "llama2"]
    options = {"shots": shots, "shots_draw": draw, "attn_implementation": attention, "max_length": 2048}
    module = make_decoder(model_dir, toy_specs(tasks), prompt_format=prompt_format, **options)
    info = DatasetInfo("massive", toy_examples("train-"), seed=0)
    features = module.featurizer.featurize(toy_examples("val-")[:4], train=True, info=info)
    batch = assert_same_loss_and_grads(module, features)
    if shots == 0 or draw == "fixed":  # the instructions (and fixed examples) are computed once
        assert batch["shared_prefix_frac"] > 0.5


def test_shared_prefix_equals_per_row_with_checkpointing_and_lora(tiny_llama2_dir):
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    for kwargs in ({"gradient_checkpointing": True}, {"lora": lora}):
        module = make_decoder(tiny_llama2_dir, toy_specs(), prompt_format="llama2", **kwargs)
        features = module.featurizer.featurize(toy_examples()[:3], train=True, info=DatasetInfo("massive"))
        assert_same_loss_and_grads(module, features)


def test_a_batch_of_one_row(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(("intent",)), prompt_format="chat")
    features = module.featurizer.featurize(toy_examples()[:1], train=True, info=DatasetInfo("massive"))
    batch = assert_same_loss_and_grads(module, features)
    first_labelled = next(i for i, label in enumerate(features[0]["labels"]) if label != IGNORE_INDEX)
    assert (batch["segments"] == 0).sum() == first_labelled - 1  # all but the token that predicts the answer
    assert batch["segments"][0, -1] == 1


def test_auto_shares_only_when_it_saves_enough(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(("intent",)), prompt_format="chat")
    features = module.featurizer.featurize(toy_examples()[:4], train=True, info=DatasetInfo("massive"))
    assert module.hparams.share_prefix == "auto" and "segments" in module.featurizer.collate(features)
    module.featurizer.share_prefix_min_saving = 0.99
    assert "segments" not in module.featurizer.collate(features)


def test_flash_attention_cannot_take_the_packed_mask(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(("intent",)), prompt_format="chat")
    module.backbone.config._attn_implementation = "flash_attention_2"
    features = module.featurizer.featurize(toy_examples()[:2], train=True, info=DatasetInfo("massive"))
    with pytest.raises(ValueError, match="attention 'flash_attention_2' cannot take the packed sequence's mask"):
        module.answer_loss(module.featurizer.collate(features))


def test_block_mask_for_flex_attention_equals_the_dense_mask():
    segments = pack(
        [
            {"input_ids": [5, 6, 7, 8, 9], "labels": [X, X, X, X, 9]},
            {"input_ids": [5, 6, 7, 1, 2, 3], "labels": [X, X, X, X, 2, 3]},
        ]
    )["segments"]
    mask = block_mask(segments)
    n = segments.shape[1]
    query, key = torch.arange(n)[:, None], torch.arange(n)[None, :]
    assert torch.equal(mask.mask_mod(0, 0, query, key), segment_mask(segments)[0, 0])
    assert mask.shape[-2:] == (n, n)
