"""What both families share: one-way setup (model -> featurizer -> DataModule), the notebook API, the example
printer."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lit_clf.data.base import DatasetInfo
from lit_clf.data.tasks import IGNORE_INDEX
from lit_clf.decoder import DecoderGenerativeModule
from lit_clf.encoder import EncoderSeqTokenModule
from lit_clf.run.callbacks import ShowTrainingExamples
from tests.helpers import ToyDataModule, toy_examples


def encoder_module(tiny_roberta_dir, data) -> EncoderSeqTokenModule:
    torch.manual_seed(0)
    module = EncoderSeqTokenModule(
        backbone=str(tiny_roberta_dir), tasks=data.task_specs, pretrained=False, max_length=64
    )
    module.configure_model()
    return module


def decoder_module(tiny_smollm_dir, data, **kwargs) -> DecoderGenerativeModule:
    torch.manual_seed(0)
    module = DecoderGenerativeModule(
        backbone=str(tiny_smollm_dir), tasks=data.task_specs, pretrained=False, prompt_format="chat", **kwargs
    )
    module.configure_model()
    return module


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kwargs,
    )


def test_task_specs_are_computed_once():
    data = ToyDataModule(tasks=["intent", "slots"])
    assert data.task_specs is data.task_specs


@pytest.mark.parametrize("family", ["encoder", "decoder"])
def test_a_module_moved_before_it_is_built_builds_its_weights_there(tiny_roberta_dir, tiny_smollm_dir, family):
    # "meta" stands for a GPU here: `module.to(device)` before configure_model (direct use, no Trainer) used to
    # leave every weight built afterwards on the CPU
    data = ToyDataModule(tasks=["intent", "slots"])
    if family == "encoder":
        module = EncoderSeqTokenModule(backbone=str(tiny_roberta_dir), tasks=data.task_specs, pretrained=False)
    else:
        module = DecoderGenerativeModule(backbone=str(tiny_smollm_dir), tasks=data.task_specs, pretrained=False)
    module.to("meta")
    module.configure_model()
    devices = {p.device.type for p in module.parameters()}
    assert devices == {"meta"}
    unmoved = EncoderSeqTokenModule(backbone=str(tiny_roberta_dir), tasks=data.task_specs, pretrained=False)
    unmoved.configure_model()
    assert {p.device.type for p in unmoved.parameters()} == {"cpu"}


def test_the_model_hands_its_featurizer_to_the_datamodule_in_setup(tiny_roberta_dir):
    data = ToyDataModule(tasks=["intent"], batch_size=4)
    module = encoder_module(tiny_roberta_dir, data)
    assert data.featurizer is None
    trainer(max_steps=1, limit_val_batches=0, num_sanity_val_steps=0).fit(module, datamodule=data)
    assert data.featurizer is module.featurizer
    assert len(data.dataset("train", train=True)) == len(toy_examples())


def test_decoder_featurizer_gets_the_dataset_from_the_datamodule(tiny_smollm_dir):
    data = ToyDataModule(tasks=["intent"], seed=7)
    module = decoder_module(tiny_smollm_dir, data, shots=5)
    data.featurizer = module.featurizer
    data.dataset("train", train=True)
    info = module.featurizer.info
    assert (info.name, info.seed, list(info.train)) == ("massive", 7, data.examples("train"))
    assert module.featurizer.encoder.pool is info.train and module.featurizer.encoder.template.source == "Listing 8"


def test_encoder_predict_texts_equals_the_batched_forward(tiny_roberta_dir):
    data = ToyDataModule(tasks=["intent", "slots"])
    module = encoder_module(tiny_roberta_dir, data).eval()
    texts = [example.text for example in toy_examples()[:3]]
    predicted = module.predict_texts(texts, batch_size=2)
    batch = module.featurizer.collate(module.featurizer.featurize(toy_examples()[:3]))
    with torch.no_grad():
        logits = module(batch["input_ids"], batch["attention_mask"])
    intents = [data.task_specs[0].labels[i] for i in logits["intent"].argmax(-1).tolist()]
    assert [row["intent"] for row in predicted] == intents
    assert [len(row["slots"]) for row in predicted] == [len(text.split()) for text in texts]
    assert module.training is False


def test_decoder_predict_texts_scores_unlabelled_text(tiny_smollm_dir):
    data = ToyDataModule(tasks=["intent"])
    module = decoder_module(tiny_smollm_dir, data, decoding="score")
    module.train()
    (row,) = module.predict_texts(["wake me up at five"], data=data.info)
    assert row["intent"] in data.task_specs[0].labels  # score decoding always answers a label
    assert module.training  # mode restored


def test_decoder_predict_texts_needs_a_pool_for_few_shot_prompts(tiny_smollm_dir):
    data = ToyDataModule(tasks=["intent"])
    module = decoder_module(tiny_smollm_dir, data, shots=5)
    with pytest.raises(ValueError, match="shots=5: the few-shot pool has 0 training examples"):
        module.predict_texts(["wake me up at five"])
    assert len(module.predict_texts(["wake me up at five"], data=DatasetInfo("massive", toy_examples(), 0))) == 1


def test_show_marks_exactly_the_loss_span(tiny_smollm_dir):
    data = ToyDataModule(tasks=["intent"])
    module = decoder_module(tiny_smollm_dir, data)
    example = toy_examples()[0]
    shown = module.featurizer.show(example, info=data.info)
    prompt, marked = shown.split("[[")
    assert marked == "alarm_set<|im_end|>]]"  # the answer and EOS: the tokens with labels
    assert prompt.endswith("<|im_start|>assistant\n") and "wake me up at five am this week" in prompt
    feature = module.featurizer.featurize([example], train=True)[0]
    loss_tokens = [i for i, label in zip(feature["input_ids"], feature["labels"]) if label != IGNORE_INDEX]
    assert module.tokenizer.decode(loss_tokens) == "alarm_set<|im_end|>"


def test_show_training_examples_prints_the_first_two(tiny_roberta_dir, capsys):
    data = ToyDataModule(tasks=["intent"], batch_size=4)
    module = encoder_module(tiny_roberta_dir, data)
    fit = trainer(max_steps=1, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[ShowTrainingExamples(2)])
    fit.fit(module, datamodule=data)
    out = capsys.readouterr().out
    assert out.count("--- training example") == 2
    assert "intent: alarm_set" in out and "intent: weather_query" in out  # the first two training examples
