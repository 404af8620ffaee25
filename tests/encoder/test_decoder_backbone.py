"""EncoderSeqTokenModule on causal decoder backbones: pooling, word sub-tokens, padding, overfitting, checkpoints."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from transformers import AutoConfig

from lit_clf.data.tasks import Example
from lit_clf.encoder import EncoderSeqTokenModule
from lit_clf.encoder.features import align_word_labels, word_token_positions
from lit_clf.encoder.pooling import is_causal, last_positions, pool, position_ids, resolve_pooling
from tests.helpers import toy_examples, toy_specs


def make_module(backbone_dir, tasks, **kwargs) -> EncoderSeqTokenModule:
    torch.manual_seed(0)
    kwargs.setdefault("dropout", 0.0)
    module = EncoderSeqTokenModule(backbone=str(backbone_dir), tasks=tasks, pretrained=False, max_length=64, **kwargs)
    module.configure_model()
    return module


def batch_for(module: EncoderSeqTokenModule, examples) -> dict:
    return module.featurizer.collate(module.featurizer.featurize(examples))


def left_padded(batch: dict, pad_id: int) -> dict:
    """The same rows padded on the left instead of the right."""
    ids, mask = batch["input_ids"].clone(), batch["attention_mask"].clone()
    for row, length in enumerate(mask.sum(-1).tolist()):
        ids[row] = torch.cat([torch.full((ids.shape[1] - length,), pad_id), batch["input_ids"][row, :length]])
        mask[row] = torch.cat([torch.zeros(ids.shape[1] - length, dtype=mask.dtype), mask[row, :length]])
    return {**batch, "input_ids": ids, "attention_mask": mask}


def test_positions_read_under_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert last_positions(right).tolist() == [2, 4, 0]
    assert last_positions(left).tolist() == [4, 4, 4]
    assert position_ids(left).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]]
    hidden = torch.arange(3 * 5 * 2, dtype=torch.float).reshape(3, 5, 2)
    assert pool(hidden, left, "last").tolist() == [hidden[0, 4].tolist(), hidden[1, 4].tolist(), hidden[2, 4].tolist()]
    assert pool(hidden, right, "first").equal(hidden[:, 0])
    assert pool(hidden, right, "mean")[0].tolist() == hidden[0, :3].mean(0).tolist()


def test_causal_backbones_are_told_from_encoders(tiny_llama2_dir, tiny_roberta_dir):
    assert is_causal(AutoConfig.from_pretrained(tiny_llama2_dir))
    assert not is_causal(AutoConfig.from_pretrained(tiny_roberta_dir))
    assert (resolve_pooling("auto", True), resolve_pooling("auto", False), resolve_pooling("mean", True)) == (
        "last",
        "first",
        "mean",
    )
    with pytest.raises(ValueError, match="pooling: expected one of auto, first, last, mean, got 'cls'"):
        resolve_pooling("cls", True)


def test_a_causal_model_reads_each_word_at_its_last_sub_token(tiny_llama2_dir):
    word_ids = [None, 0, 0, 0, 1, 2, 2, None]
    assert word_token_positions(word_ids, "first") == [1, 4, 5]
    assert word_token_positions(word_ids, "last") == [3, 4, 6]
    assert align_word_labels(word_ids, [5, 6, 7], "last") == [-100, -100, -100, 5, 6, -100, 7, -100]
    module = make_module(tiny_llama2_dir, toy_specs())
    tokenizer = module.tokenizer
    example = Example("x", "set an alarm at fiveish", {"intent": "alarm_set", "slots": ("Other",) * 4 + ("time",)})
    feature = module.featurizer.featurize([example])[0]
    word_ids = tokenizer([example.words], is_split_into_words=True, truncation=True, max_length=64).word_ids(0)
    last = [max(i for i, w in enumerate(word_ids) if w == word) for word in range(5)]
    assert feature["word_positions"] == last
    assert len(tokenizer.tokenize("fiveish")) > 1  # a multi-piece word: its last piece carries the label


def test_a_tokenizer_without_pad_token_borrows_its_eos(tiny_llama2_dir):
    module = make_module(tiny_llama2_dir, toy_specs(("intent",)))
    assert module.tokenizer.pad_token_id == module.tokenizer.eos_token_id
    assert module.causal and module.pooling == "last"


@pytest.mark.parametrize("tasks", [("intent",), ("intent", "slots")])
def test_logits_are_identical_under_left_and_right_padding(tiny_llama2_dir, tasks):
    module = make_module(tiny_llama2_dir, toy_specs(tasks)).eval()
    right = batch_for(module, toy_examples()[:4])
    assert (right["attention_mask"] == 0).any()  # rows of different lengths
    left = left_padded(right, module.tokenizer.pad_token_id)
    with torch.no_grad():
        a = module(right["input_ids"], right["attention_mask"])
        b = module(left["input_ids"], left["attention_mask"])
    torch.testing.assert_close(a["intent"], b["intent"], rtol=1e-5, atol=1e-5)
    if "slots" in tasks:
        for row, length in enumerate(right["attention_mask"].sum(-1).tolist()):
            width = right["input_ids"].shape[1]
            torch.testing.assert_close(
                a["slots"][row, :length], b["slots"][row, width - length :], rtol=1e-5, atol=1e-5
            )


def test_a_tiny_llama_with_heads_overfits_intent_and_slots(tiny_llama2_dir):
    module = make_module(tiny_llama2_dir, toy_specs())
    batch = batch_for(module, toy_examples()[:6])
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss, _, _ = module.model_step(batch)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05 * first
    module.eval()
    with torch.no_grad():
        _, _, logits = module.model_step(batch)
    assert logits["intent"].argmax(-1).equal(batch["labels"]["intent"])
    words = module._word_predictions(batch, module.tasks[1], logits["slots"].argmax(-1))
    assert words == batch["word_labels"]["slots"]


def test_checkpoint_round_trip_gives_identical_logits(tiny_llama2_dir, tmp_path):
    module = make_module(tiny_llama2_dir, toy_specs())
    with torch.no_grad():
        for head in module.heads.values():
            head[1].weight.normal_()  # heads that differ from a fresh seed-0 build
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(module)
    path = tmp_path / "heads.ckpt"
    trainer.save_checkpoint(path)
    torch.manual_seed(123)
    loaded = EncoderSeqTokenModule.load_from_checkpoint(path, weights_only=True).eval()
    batch = batch_for(module, toy_examples()[:3])
    with torch.no_grad():
        a, b = (
            module.eval()(batch["input_ids"], batch["attention_mask"]),
            loaded(batch["input_ids"], batch["attention_mask"]),
        )
    for name in a:
        assert torch.equal(a[name], b[name])


def test_lora_trains_the_adapters_and_the_heads_only(tiny_llama2_dir):
    pytest.importorskip("peft")
    module = make_module(
        tiny_llama2_dir, toy_specs(), lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    )
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("heads.") for name in trainable)
    assert any(name.startswith("heads.") for name in trainable)
    loss, _, _ = module.model_step(batch_for(module, toy_examples()[:2]))
    loss.backward()


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_llama2_dir):
    plain, checkpointed = (
        make_module(tiny_llama2_dir, toy_specs()),
        make_module(tiny_llama2_dir, toy_specs(), gradient_checkpointing=True),
    )
    batch = batch_for(plain, toy_examples()[:4])
    losses = []
    for module in (plain, checkpointed):
        loss, _, _ = module.model_step(batch)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    for a, b in zip(plain.backbone.parameters(), checkpointed.backbone.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)


def test_dtype_and_attention_kernel_reach_the_backbone_and_heads_stay_float32(tiny_llama2_dir):
    reference = make_module(tiny_llama2_dir, toy_specs(), attn_implementation="sdpa").eval()
    module = make_module(tiny_llama2_dir, toy_specs(), torch_dtype="bfloat16", attn_implementation="eager").eval()
    assert {p.dtype for p in module.backbone.parameters()} == {torch.bfloat16}
    assert module.backbone.config._attn_implementation == "eager"
    assert reference.backbone.config._attn_implementation == "sdpa"
    assert {p.dtype for name, p in module.named_parameters() if not name.startswith("backbone.")} == {torch.float32}
    batch = batch_for(module, toy_examples()[:4])
    with torch.no_grad():
        low = module(batch["input_ids"], batch["attention_mask"])
        full = reference(batch["input_ids"], batch["attention_mask"])
    for task in ("intent", "slots"):  # the same seeded weights, rounded to bfloat16 and run by another kernel
        assert low[task].dtype == torch.float32
        torch.testing.assert_close(low[task], full[task], rtol=0.05, atol=0.05)
    loss, _, _ = module.train().model_step(batch)
    loss.backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)


def test_the_model_is_built_in_configure_model_and_rank_zero_alone_reads_it_under_fsdp(tmp_path, tiny_llama2_dir):
    """Nothing is loaded in ``__init__``; under FSDP on several devices ranks > 0 build the backbone on the meta
    device and rank 0 reads the weights (the strategy broadcasts them), as the decoder module does."""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy
    from transformers import AutoModel, AutoTokenizer

    saved = tmp_path / "pretrained"
    torch.manual_seed(1)
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_llama2_dir)).save_pretrained(saved)
    AutoTokenizer.from_pretrained(tiny_llama2_dir).save_pretrained(saved)
    unbuilt = EncoderSeqTokenModule(backbone=str(saved), tasks=toy_specs(), max_length=64)
    assert unbuilt.backbone is None and unbuilt.heads is None and not list(unbuilt.parameters())
    batch = batch_for(unbuilt, toy_examples()[:2])
    with pytest.raises(RuntimeError, match=r"not built yet: call configure_model\(\)"):
        unbuilt(batch["input_ids"], batch["attention_mask"])
    weights = {}
    for rank in (1, 0):
        strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")] * 2)
        module = EncoderSeqTokenModule(backbone=str(saved), tasks=toy_specs(), max_length=64)
        module._trainer = SimpleNamespace(strategy=strategy, world_size=2, global_rank=rank, precision="bf16-mixed")
        module.configure_model()
        weights[rank] = module.backbone.norm.weight
        assert strategy.kwargs["sync_module_states"] is True
        assert {task.name for task in module.tasks} == set(module.heads)  # heads on every rank, for the broadcast
    assert weights[1].is_meta and not weights[0].is_meta
    torch.testing.assert_close(weights[0], AutoModel.from_pretrained(saved).norm.weight)
    module.configure_model()  # once: a second call keeps the model
    assert module.backbone.norm.weight is weights[0]
