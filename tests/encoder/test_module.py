"""EncoderSeqTokenModule on tiny random encoders built from config with the real tokenizers."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from lit_clf.data.tasks import IGNORE_INDEX, Example, TaskSpec
from lit_clf.encoder import EncoderSeqTokenModule
from lit_clf.encoder.features import EncoderFeaturizer, align_word_labels, word_predictions
from tests.helpers import ToyDataModule, toy_examples


def make_module(backbone_dir, tasks, **kwargs) -> EncoderSeqTokenModule:
    torch.manual_seed(0)
    module = EncoderSeqTokenModule(backbone=str(backbone_dir), tasks=tasks, pretrained=False, max_length=64, **kwargs)
    module.configure_model()
    return module


def toy_specs(names=("intent", "slots")) -> list[TaskSpec]:
    return [spec for spec in ToyDataModule(tasks=list(names)).task_specs]


def batch_for(module: EncoderSeqTokenModule, examples) -> dict:
    return module.featurizer.collate(module.featurizer.featurize(examples))


def test_alignment_labels_first_subtoken_only(roberta_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(roberta_tokenizer_dir, add_prefix_space=True)
    spec = TaskSpec("slots", "token", ("Other", "time", "person"))
    example = Example("x", "call bartholomew at five:30am", {"slots": ("Other", "person", "Other", "time")})
    feature = EncoderFeaturizer(tokenizer, [spec], max_length=32).featurize([example])[0]
    tokens = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert tokens == ["<s>", "Ġcall", "Ġbar", "th", "ol", "omew", "Ġat", "Ġfive", ":", "30", "am", "</s>"]
    assert feature["labels"]["slots"] == [-100, 0, 2, -100, -100, -100, 0, 1, -100, -100, -100, -100]
    assert feature["word_positions"] == [1, 2, 6, 7]
    assert feature["word_labels"]["slots"] == [0, 2, 0, 1]


def test_truncated_words_predict_other_and_stay_in_gold(roberta_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(roberta_tokenizer_dir, add_prefix_space=True)
    spec = TaskSpec("slots", "token", ("Other", "date"))
    example = Example("x", "one two three four five six", {"slots": ("Other",) * 4 + ("date", "date")})
    feature = EncoderFeaturizer(tokenizer, [spec], max_length=5).featurize([example])[0]
    assert feature["word_positions"] == [1, 2, 3]  # <s> + 3 words + </s>
    assert feature["word_labels"]["slots"] == [0, 0, 0, 0, 1, 1]  # gold keeps all six words
    preds = torch.ones(1, 5, dtype=torch.long)  # every token predicts "date"
    assert word_predictions(preds, [feature["word_positions"]], [6], other_id=0) == [[1, 1, 1, 0, 0, 0]]


def test_align_word_labels_specials_and_continuations():
    assert align_word_labels([None, 0, 0, 1, None, None], [5, 7]) == [
        IGNORE_INDEX,
        5,
        IGNORE_INDEX,
        7,
        IGNORE_INDEX,
        IGNORE_INDEX,
    ]


def test_batch_keys_and_shapes(tiny_roberta_dir):
    module = make_module(tiny_roberta_dir, toy_specs())
    batch = batch_for(module, toy_examples()[:3])
    assert set(batch) == {"index", "input_ids", "attention_mask", "labels", "word_positions", "word_labels"}
    B, T = batch["input_ids"].shape
    assert B == 3 and batch["attention_mask"].shape == (B, T)
    assert batch["labels"]["intent"].shape == (B,)
    assert batch["labels"]["slots"].shape == (B, T)
    # dynamic padding: the longest row has no padding, pad id 1 fills the rest
    lengths = batch["attention_mask"].sum(1)
    assert lengths.max() == T
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 1).all()
    logits = module(batch["input_ids"], batch["attention_mask"])
    assert logits["intent"].shape == (B, len(module.tasks[0].labels))
    assert logits["slots"].shape == (B, T, len(module.tasks[1].labels))


def test_joint_loss_is_sum_of_single_task_losses(tiny_roberta_dir):
    joint = make_module(tiny_roberta_dir, toy_specs()).eval()
    specs = {spec.name: spec for spec in joint.tasks}
    batch = batch_for(joint, toy_examples())
    joint_loss, _, _ = joint.model_step(batch)
    singles = 0.0
    for name in ("intent", "slots"):
        single = make_module(tiny_roberta_dir, [specs[name]]).eval()
        single.backbone.load_state_dict(joint.backbone.state_dict())
        single.heads[name].load_state_dict(joint.heads[name].state_dict())
        # the single-task model tokenizes by words only for the token task: use the joint batch for both
        loss, _, _ = single.model_step({**batch, "labels": {name: batch["labels"][name]}})
        singles = singles + loss
    torch.testing.assert_close(joint_loss, singles)


def test_task_weights_scale_losses(tiny_roberta_dir):
    module = make_module(tiny_roberta_dir, toy_specs(), task_weights={"slots": 0.0}).eval()
    batch = batch_for(module, toy_examples())
    total, losses, _ = module.model_step(batch)
    torch.testing.assert_close(total, losses["intent"])
    with pytest.raises(ValueError, match="task_weights: unknown task 'slot'"):
        make_module(tiny_roberta_dir, toy_specs(), task_weights={"slot": 1.0})


def test_golden_loss_on_seeded_tiny_model(tiny_roberta_dir):
    module = make_module(tiny_roberta_dir, toy_specs()).eval()
    total, losses, _ = module.model_step(batch_for(module, toy_examples()))
    torch.testing.assert_close(losses["intent"], torch.tensor(GOLDEN_INTENT_LOSS), atol=1e-4, rtol=0)
    torch.testing.assert_close(losses["slots"], torch.tensor(GOLDEN_SLOTS_LOSS), atol=1e-4, rtol=0)


GOLDEN_INTENT_LOSS = 1.843998
GOLDEN_SLOTS_LOSS = 2.409836


def test_overfits_one_batch_on_both_tasks(tiny_roberta_dir):
    module = make_module(tiny_roberta_dir, toy_specs(), dropout=0.0)
    batch = batch_for(module, toy_examples())
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    module.train()
    for _ in range(150):
        loss, _, _ = module.model_step(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    module.eval()
    rows = module.predict_step(batch, 0)
    examples = toy_examples()
    assert [row["tasks"]["intent"]["pred"] for row in rows] == [ex.labels["intent"] for ex in examples]
    assert [tuple(row["tasks"]["slots"]["pred"]) for row in rows] == [ex.labels["slots"] for ex in examples]


def fit_tiny(tmp_path, backbone_dir, tasks=("intent", "slots"), **trainer_kwargs):
    data = ToyDataModule(tasks=list(tasks), batch_size=4)
    module = make_module(backbone_dir, data.task_specs)
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule=data)
    return trainer, module, data


def test_checkpoint_round_trip_identical_logits(tmp_path, tiny_roberta_dir):
    trainer, module, data = fit_tiny(tmp_path, tiny_roberta_dir, enable_checkpointing=False)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # no pickled Python objects inside
    assert checkpoint["id2label"]["intent"] == list(module.tasks[0].labels)
    assert checkpoint["task_specs"][1]["kind"] == "token"
    restored = EncoderSeqTokenModule.load_from_checkpoint(path, weights_only=True).eval()
    module.eval()
    batch = batch_for(module, toy_examples())
    with torch.no_grad():
        before = module(batch["input_ids"], batch["attention_mask"])
        after = restored(batch["input_ids"], batch["attention_mask"])
    for name in before:
        torch.testing.assert_close(before[name], after[name], rtol=0, atol=0)


def test_validate_logs_task_metrics(tmp_path, tiny_roberta_dir):
    trainer, module, data = fit_tiny(tmp_path, tiny_roberta_dir, enable_checkpointing=False)
    (metrics,) = trainer.validate(module, datamodule=data, verbose=False)
    assert {
        "val/loss",
        "val/intent_acc",
        "val/intent_ece",
        "val/intent_brier",
        "val/slots_f1",
        "val/slots_exact_match",
    } <= set(metrics)
    assert 0.0 <= metrics["val/slots_f1"] <= 1.0


def test_export_loads_with_plain_transformers(tmp_path, tiny_bert_dir):
    data = ToyDataModule(tasks=["intent"], batch_size=4)
    module = make_module(tiny_bert_dir, data.task_specs).eval()
    out = module.export_pretrained(tmp_path / "export")
    encoder = AutoModel.from_pretrained(out)  # the backbone alone, plain transformers
    assert encoder.config.hidden_size == 32
    assert json.loads((out / "lit_clf_tasks.json").read_text())["tasks"][0]["name"] == "intent"
    restored = EncoderSeqTokenModule.from_exported(out).eval()
    batch = batch_for(module, toy_examples())
    with torch.no_grad():
        torch.testing.assert_close(
            module(batch["input_ids"], batch["attention_mask"])["intent"],
            restored(batch["input_ids"], batch["attention_mask"])["intent"],
        )


def test_missing_tasks_is_a_clear_error(tiny_roberta_dir):
    with pytest.raises(ValueError, match="`tasks` is empty"):
        EncoderSeqTokenModule(backbone=str(tiny_roberta_dir), pretrained=False)


@pytest.mark.slow
def test_compiled_backbone_matches_eager(tiny_roberta_dir):
    eager = make_module(tiny_roberta_dir, toy_specs()).eval()
    compiled = make_module(tiny_roberta_dir, toy_specs(), compile=True).eval()
    compiled.load_state_dict(eager.state_dict())  # same keys: compile happens in place
    batch = batch_for(eager, toy_examples())
    with torch.no_grad():
        expected = eager(batch["input_ids"], batch["attention_mask"])
        got = compiled(batch["input_ids"], batch["attention_mask"])
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-4, rtol=1e-4)


def test_a_multilabel_head_trains_with_binary_cross_entropy_and_predicts_above_the_threshold(tiny_roberta_dir):
    import torch.nn.functional as F

    spec = TaskSpec("genres", "multilabel", ("adventure", "crime", "romance"))
    torch.manual_seed(0)
    module = EncoderSeqTokenModule(backbone=str(tiny_roberta_dir), tasks=[spec], pretrained=False, max_length=32)
    module.configure_model()
    examples = [
        Example("0", "a heist at sea", {"genres": ("adventure", "crime")}),
        Example("1", "nothing happens", {"genres": ()}),
        Example("2", "text to predict"),  # unlabelled: no loss, no score
    ]
    batch = module.featurizer.collate(module.featurizer.featurize(examples))
    assert batch["labels"]["genres"].tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [-100.0, -100.0, -100.0]]
    module.eval()
    logits = module(batch["input_ids"], batch["attention_mask"])["genres"]
    loss = module.task_losses({"genres": logits}, batch["labels"])["genres"]
    reference = F.binary_cross_entropy_with_logits(logits[:2], batch["labels"]["genres"][:2])
    assert torch.allclose(loss, reference)
    rows = module._prediction_rows(batch, {"genres": logits})
    probs = logits.sigmoid()
    for row, p in zip(rows, probs.tolist()):
        assert row["tasks"]["genres"]["pred"] == [label for label, q in zip(spec.labels, p) if q > 0.5]
        assert len(row["tasks"]["genres"]["top"]) == 3


def test_bf16_true_trains_heads_and_backbone_in_bf16(tmp_path, tiny_roberta_dir):
    """Under ``precision: bf16-true`` Lightning converts the heads too: the pooled states must follow them."""
    trainer, module, _ = fit_tiny(tmp_path, tiny_roberta_dir, enable_checkpointing=False, precision="bf16-true")
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
