"""DecoderGenerativeModule on tiny random Llama models built from config with the real tokenizers."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

import lit_clf.decoder.module as decoder_module
from lit_clf.data.base import DatasetInfo
from lit_clf.data.tasks import IGNORE_INDEX, Example, TaskSpec
from lit_clf.decoder import DecoderGenerativeModule
from lit_clf.decoder.decoding.base import read_answer
from lit_clf.decoder.features import DecoderFeaturizer
from lit_clf.prompting.answers import render_answer
from tests.helpers import REPO, ToyDataModule, decoder_overrides, make_decoder, run_cli, toy_examples, toy_specs

DECODER_CONFIGS = REPO / "configs" / "decoder"
TASK_CONFIGS = REPO / "configs" / "task"  # shared with the encoder rows
FSDP_CONFIG = REPO / "configs" / "trainer" / "fsdp-8xa100.yaml"
CPU_CONFIGS = sorted(
    p for p in (REPO / "configs").rglob("smollm2-*.yaml") if "DecoderGenerativeModule" in p.read_text()
)


# ---------------------------------------------------------------------------------------------------------------------
# Tiny models


def batch_for(module: DecoderGenerativeModule, examples, split: str) -> dict:
    return module.featurizer.collate(module.featurizer.featurize(examples, train=split == "train"))


def gold_value(example: Example, task: str):
    value = example.labels[task]
    return value if isinstance(value, str) else list(value)


# ---------------------------------------------------------------------------------------------------------------------
# Features: masks, padding, few-shot pool


FORMATS = ["chat", "llama2"]
TASK_SETS = [("intent",), ("slots",), ("intent", "slots")]


@pytest.mark.parametrize("shots", [0, 5])
@pytest.mark.parametrize("tasks", TASK_SETS, ids="+".join)
@pytest.mark.parametrize("prompt_format", FORMATS)
def test_training_batch_masks_exactly_answer_and_eos(model_dirs, prompt_format, tasks, shots):
    tokenizer = AutoTokenizer.from_pretrained(model_dirs[prompt_format])
    featurizer = DecoderFeaturizer(tokenizer, toy_specs(tasks), prompt_format=prompt_format, shots=shots)
    examples = toy_examples("val-")[:3]
    info = DatasetInfo("massive", toy_examples("train-"), seed=0)
    batch = featurizer.collate(featurizer.featurize(examples, train=True, info=info))
    assert set(batch) == {"index", "truncated", "input_ids", "attention_mask", "labels"}
    assert batch["truncated"].tolist() == [False] * 3  # short utterances: nothing cut
    B, T = batch["input_ids"].shape
    assert B == 3 and batch["labels"].shape == batch["attention_mask"].shape == (B, T)
    for row, example in enumerate(examples):
        answer = featurizer.encoder.answer_ids(example) + [tokenizer.eos_token_id]
        n = int(batch["attention_mask"][row].sum())
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (T - n)  # right padding
        assert (batch["input_ids"][row, n:] == featurizer.pad_id).all()
        labels = batch["labels"][row]
        assert int((labels != IGNORE_INDEX).sum()) == len(answer)  # answer tokens + EOS, nothing else
        assert labels[n - len(answer) : n].tolist() == batch["input_ids"][row, n - len(answer) : n].tolist() == answer
        text = tokenizer.decode(answer, skip_special_tokens=True).strip()
        assert text == render_answer(example, featurizer.encoder.tasks, featurizer.encoder.template.keys or None)


def test_exact_mask_counts_of_one_batch(tiny_smollm_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_smollm_dir)
    featurizer = DecoderFeaturizer(tokenizer, toy_specs(), prompt_format="chat")
    batch = featurizer.collate(featurizer.featurize(toy_examples(), train=True))
    # {"task1": "alarm_set", "task2": ["Other", ..., "date"]} + <|im_end|>, per example
    assert (batch["labels"] != IGNORE_INDEX).sum(1).tolist() == GOLDEN_ANSWER_TOKENS
    assert batch["input_ids"].shape == (8, GOLDEN_LONGEST_TRAINING_ROW)


GOLDEN_ANSWER_TOKENS = [40, 40, 42, 40, 42, 33, 38, 34]
GOLDEN_LONGEST_TRAINING_ROW = 313


@pytest.mark.parametrize("prompt_format", FORMATS)
def test_generation_batch_left_padded_prompts_with_gold(model_dirs, prompt_format):
    tokenizer = AutoTokenizer.from_pretrained(model_dirs[prompt_format])
    specs = toy_specs()
    featurizer = DecoderFeaturizer(tokenizer, specs, prompt_format=prompt_format)
    examples = toy_examples("test-")[:3]
    training = featurizer.featurize(examples, train=True)
    batch = featurizer.collate(featurizer.featurize(examples, train=False))
    assert set(batch) == {
        "index",
        "truncated",
        "teacher_forced",
        "input_ids",
        "attention_mask",
        "gold",
        "words",
        "num_words",
        "max_new_tokens",
        "prefix_length",
    }
    assert batch["prefix_length"] == 0  # a featurizer without share_prefix pads every prompt whole
    B, T = batch["input_ids"].shape
    for row, train in enumerate(training):
        n = int(batch["attention_mask"][row].sum())
        assert batch["attention_mask"][row].tolist() == [0] * (T - n) + [1] * n  # left padding
        answer_len = sum(label != IGNORE_INDEX for label in train["labels"])
        assert batch["input_ids"][row, T - n :].tolist() == train["input_ids"][:-answer_len]  # the same prompt
        assert batch["max_new_tokens"] >= answer_len
    intents, slots = specs
    assert batch["gold"]["intent"].tolist() == [intents.label2id[ex.labels["intent"]] for ex in examples]
    assert batch["gold"]["slots"] == [[slots.label2id[w] for w in ex.labels["slots"]] for ex in examples]
    assert batch["words"] == [tuple(ex.words) for ex in examples]
    assert batch["num_words"] == [len(ex.words) for ex in examples]
    assert batch["index"].tolist() == [0, 1, 2]
    forced = batch["teacher_forced"]  # the val/loss rows: exactly the training features (nothing cut here)
    for row, train in enumerate(training):
        n = len(train["input_ids"])
        assert forced["input_ids"][row, :n].tolist() == train["input_ids"]
        assert forced["labels"][row, :n].tolist() == train["labels"]
        assert (forced["labels"][row, n:] == IGNORE_INDEX).all()


def test_answer_budget_covers_every_gold_answer(tiny_llama2_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    for tasks in TASK_SETS:
        featurizer = DecoderFeaturizer(tokenizer, toy_specs(tasks), prompt_format="llama2")
        for example, feature in zip(toy_examples(), featurizer.featurize(toy_examples(), train=False)):
            assert feature["max_new_tokens"] >= len(featurizer.encoder.answer_ids(example)) + 1
    inline = REPO / "configs" / "prompts" / "massive-intent+slots-inline-0shot.yaml"
    featurizer = DecoderFeaturizer(
        tokenizer, toy_specs(("intent", "slots")), prompt_format="llama2", prompt_file=inline
    )
    for example, feature in zip(toy_examples(), featurizer.featurize(toy_examples(), train=False)):
        assert featurizer.encoder.template.token_format == "inline"
        assert feature["max_new_tokens"] >= len(featurizer.encoder.answer_ids(example)) + 1
        slots = ["date", "time"] * len(example.words)  # every word a span of its own: the longest inline answers
        worst = Example("w", example.text, {**example.labels, "slots": tuple(slots[: len(example.words)])})
        assert feature["max_new_tokens"] >= len(featurizer.encoder.answer_ids(worst)) + 1
    fixed = DecoderFeaturizer(tokenizer, toy_specs(), prompt_format="llama2", max_new_tokens=7)
    assert {f["max_new_tokens"] for f in fixed.featurize(toy_examples(), train=False)} == {7}


def test_dataset_names_pick_the_paper_prompt(tiny_llama2_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    featurizer = DecoderFeaturizer(tokenizer, toy_specs(("slots", "intent")), prompt_format="llama2")
    assert featurizer.template("massive").source == "Listing 11"
    assert featurizer.template(None).source == "Listing 11"  # no dataset: found by the tasks
    # no paper prompt for these tasks on another dataset: the generic prompt written from the specs
    generic = featurizer.template("newsgroups")
    assert generic.source == "generic prompt" and generic.keys == ("slots", "intent")


def test_five_shots_come_from_the_train_split_never_the_query(tiny_llama2_dir):
    data = ToyDataModule(tasks=["intent"], batch_size=8)
    module = make_decoder(tiny_llama2_dir, data.task_specs, prompt_format="llama2", shots=5, max_new_tokens=1)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.validate(module, datamodule=data, verbose=False)
    encoder = module.featurizer.encoder
    assert encoder.pool is data.examples("train")
    for example in data.examples("val"):
        shots = encoder.shots_for(example)
        assert len(shots) == 5 and all(shot.id.startswith("train-") for shot in shots)
    for example in data.examples("train"):
        assert example.id not in {shot.id for shot in encoder.shots_for(example)}


# ---------------------------------------------------------------------------------------------------------------------
# Loss


def test_golden_loss_on_seeded_tiny_model(tiny_smollm_dir, monkeypatch):
    module = make_decoder(tiny_smollm_dir, toy_specs(), prompt_format="chat", share_prefix=False).eval()
    batch = batch_for(module, toy_examples(), "train")
    module.featurizer.share_prefix = True
    shared_batch = batch_for(module, toy_examples(), "train")
    with torch.no_grad():
        shared = module.answer_loss(shared_batch)
        loss = module.answer_loss(batch)
        logits = module(batch["input_ids"], batch["attention_mask"])  # every position, the reference
        reference = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten())
        monkeypatch.setattr(decoder_module, "_masked_logits_supported", lambda: False)  # older transformers path
        union = module.answer_loss(batch)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(union, reference)
    torch.testing.assert_close(loss, torch.tensor(GOLDEN_LOSS), atol=1e-4, rtol=0)
    torch.testing.assert_close(shared, torch.tensor(GOLDEN_LOSS), atol=1e-4, rtol=0)


GOLDEN_LOSS = 10.790324


# ---------------------------------------------------------------------------------------------------------------------
# Generation


def test_overfits_toy_examples_and_generates_the_gold_answers(tiny_llama2_dir, tmp_path):
    template = tmp_path / "short.yaml"  # a short prompt keeps 100 CPU steps fast; the paper's work the same way
    template.write_text('prompt: "Classify: {text}"\n')
    examples = toy_examples()[:4]
    module = make_decoder(tiny_llama2_dir, toy_specs(), prompt_format="llama2", prompt_file=str(template))
    batch, generation = batch_for(module, examples, "train"), batch_for(module, examples, "test")
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.0)
    module.train()
    for _ in range(100):
        loss = module.answer_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    module.eval()
    rows = module.predict_step(generation, 0)
    assert [row["index"] for row in rows] == [0, 1, 2, 3]
    for row, example in zip(rows, examples):
        assert json.loads(row["tasks"]["intent"]["raw"]) == {
            "task1": example.labels["intent"],
            "task2": gold_value(example, "slots"),
        }
        for task in ("intent", "slots"):
            assert row["tasks"][task]["valid"] and row["tasks"][task]["pred"] == gold_value(example, task)


def validate(module, tasks=("intent", "slots")) -> dict[str, float]:
    data = ToyDataModule(tasks=list(tasks), batch_size=8)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    (metrics,) = trainer.validate(module, datamodule=data, verbose=False)
    return metrics


def test_untrained_model_validation_logs_invalid_rate_and_counts_invalid_as_wrong(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(), prompt_format="chat", max_new_tokens=6)
    metrics = validate(module)
    assert set(metrics) == {
        "val/intent_acc",
        "val/intent_invalid_rate",
        "val/slots_f1",
        "val/slots_exact_match",
        "val/slots_invalid_rate",
        "val/truncated_frac",
        "val/loss",
    }
    assert metrics["val/truncated_frac"] == 0.0 and metrics["val/loss"] > 0
    assert metrics["val/intent_invalid_rate"] == metrics["val/slots_invalid_rate"] == 1.0
    assert metrics["val/intent_acc"] == metrics["val/slots_exact_match"] == 0.0


def test_metrics_of_parsed_answers(tiny_llama2_dir):
    """Invalid answers are wrong even when a label is readable: accuracy and slot exact match count only valid
    answers (an invalid slot list is never an exact match); slot F1 is best effort."""
    module = make_decoder(tiny_llama2_dir, toy_specs(), prompt_format="llama2")
    examples = toy_examples()[:4]  # alarm_set (8 words), weather_query (7), play_music (7), qa_currency (7)
    gold = [{"task1": ex.labels["intent"], "task2": gold_value(ex, "slots")} for ex in examples]
    texts = [
        json.dumps(gold[0]),  # right, valid
        json.dumps(gold[1])[:-1],  # cut before "}": invalid; intent readable but counts as wrong
        json.dumps({**gold[2], "task1": "not_an_intent"}),  # unknown intent: invalid; slots right and valid
        json.dumps({**gold[3], "task2": gold[3]["task2"][:-1]}),  # one slot label short: slots invalid
    ]
    module.decode = lambda batch: [
        read_answer(module.featurizer.encoder, t, n) for t, n in zip(texts, batch["num_words"])
    ]
    module._evaluate(batch_for(module, examples, "val"), "val")
    metrics = {name: metric.compute().item() for name, metric in module.metrics["val"]["intent"].items()}
    assert metrics == {"acc": 0.5, "invalid_rate": 0.5}
    slots = {name: metric.compute().item() for name, metric in module.metrics["val"]["slots"].items()}
    # rows 0 and 2 hold valid, right slot lists; row 1's (cut JSON) would match as read, but it is invalid
    assert slots["invalid_rate"] == 0.5 and slots["exact_match"] == 0.5


def test_metrics_of_parsed_label_sets(tiny_llama2_dir):
    """Multi-label answers: micro/macro F1 and exact match of the label sets, invalid ones scored best effort."""
    genres = TaskSpec("genres", "multilabel", ("adventure", "crime", "romance"))
    module = make_decoder(tiny_llama2_dir, [genres], prompt_format="llama2")
    golds = [("crime", "adventure"), ("romance",), (), ("crime",)]
    examples = [Example(str(i), f"film {i}", {"genres": g}) for i, g in enumerate(golds)]
    texts = ['["adventure", "crime"]', '["romance", "crime"]', "[]", '["crime", "spy"]']  # last: unknown label
    module.decode = lambda batch: [
        read_answer(module.featurizer.encoder, t, n) for t, n in zip(texts, batch["num_words"])
    ]
    module._evaluate(batch_for(module, examples, "val"), "val")
    metrics = {name: round(metric.compute().item(), 4) for name, metric in module.metrics["val"]["genres"].items()}
    # micro: 4 right labels, 1 extra (crime in row 1), none missed; macro: adventure 1, crime 0.8, romance 1
    assert metrics == {"f1": round(8 / 9, 4), "macro_f1": round(2.8 / 3, 4), "exact_match": 0.75, "invalid_rate": 0.25}


def test_constrained_decoding_has_no_invalid_output(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(), prompt_format="chat", decoding="constrained")
    metrics = validate(module)
    assert metrics["val/intent_invalid_rate"] == metrics["val/slots_invalid_rate"] == 0.0


@pytest.mark.parametrize("normalization", ["none", "mean"])
def test_score_decoding_picks_the_argmax_of_reference_scores(tiny_llama2_dir, normalization):
    (spec,) = specs = toy_specs(("intent",))
    module = make_decoder(
        tiny_llama2_dir,
        specs,
        prompt_format="llama2",
        decoding="score",
        length_normalization=normalization,
        candidates_per_pass=2,
    ).eval()
    examples = toy_examples()[:4]
    batch = batch_for(module, examples, "test")
    passes = []
    hook = module.backbone.register_forward_hook(lambda *_: passes.append(1))
    predicted = [row.answers["intent"].value for row in module.decode(batch)]
    hook.remove()
    assert batch["prefix_length"] > 0
    # the prompts' shared prefix once, the rest of the prompts, then 2 candidates per pass
    assert len(passes) == 2 + -(-len(spec.labels) // 2)
    encoder, eos = module.featurizer.encoder, module.tokenizer.eos_token_id
    candidates = [encoder.answer_ids(Example("", "", {"intent": label})) + [eos] for label in spec.labels]
    reference = torch.zeros(len(examples), len(candidates))
    with torch.no_grad():  # one full forward pass per prompt and candidate
        for row in range(len(examples)):
            prompt = batch["input_ids"][row, batch["attention_mask"][row].bool()].tolist()
            for c, answer in enumerate(candidates):
                logprobs = module(
                    torch.tensor([prompt + answer]), torch.ones(1, len(prompt) + len(answer))
                ).log_softmax(-1)
                picked = logprobs[0, len(prompt) - 1 : -1].gather(-1, torch.tensor(answer)[:, None])
                reference[row, c] = picked.sum() / (len(answer) if normalization == "mean" else 1)
    top2 = reference.topk(2).values
    assert ((top2[:, 0] - top2[:, 1]) > 1e-4).all()  # no near-tie could flip the comparison
    assert predicted == [spec.labels[i] for i in reference.argmax(-1).tolist()]


def test_score_decoding_refuses_token_and_multilabel_tasks(tiny_llama2_dir):
    with pytest.raises(ValueError, match="'slots' is a token task; use decoding 'free' or 'constrained'"):
        make_decoder(tiny_llama2_dir, toy_specs(), prompt_format="llama2", decoding="score")
    genres = TaskSpec("genres", "multilabel", ("adventure", "crime"))
    with pytest.raises(ValueError, match="'genres' is a multilabel task; use decoding 'free' or 'constrained'"):
        make_decoder(tiny_llama2_dir, [genres], prompt_format="llama2", decoding="score")


def test_prompt_style_and_label_descriptions_errors_are_one_line(tiny_llama2_dir):
    specs = toy_specs(("intent",))
    with pytest.raises(ValueError, match="prompt_style: expected one of serial, json, got 'xml'"):
        make_decoder(tiny_llama2_dir, specs, prompt_format="llama2", prompt_style="xml")
    with pytest.raises(ValueError, match="label_descriptions: no task 'topic'"):
        make_decoder(tiny_llama2_dir, specs, prompt_format="llama2", label_descriptions={"topic": {"a": "b"}})
    with pytest.raises(ValueError, match="label_descriptions.intent: 'nope' is not a label of task 'intent'"):
        make_decoder(tiny_llama2_dir, specs, prompt_format="llama2", label_descriptions={"intent": {"nope": "b"}})
    paper = make_decoder(tiny_llama2_dir, specs, prompt_format="llama2", prompt_style="json")
    with pytest.raises(ValueError, match="prompt_style='json': Listing 7 answers in the serial style"):
        paper.featurizer.template("massive")


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints, adapters, options, sharding


def test_checkpoint_round_trip_identical_logits(tmp_path, tiny_llama2_dir):
    data = ToyDataModule(tasks=["intent", "slots"], batch_size=4)
    module = make_decoder(tiny_llama2_dir, data.task_specs, prompt_format="llama2")
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=data)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # no pickled Python objects inside
    assert checkpoint["id2label"]["intent"] == list(module.tasks[0].labels)
    assert checkpoint["hyper_parameters"]["tasks"][1]["kind"] == "token"
    assert "optimizer" not in checkpoint["hyper_parameters"]  # a callable given in code: dropped
    restored = DecoderGenerativeModule.load_from_checkpoint(path, weights_only=True).eval()
    module.eval()
    batch = batch_for(module, toy_examples(), "test")
    with torch.no_grad():
        before = module(batch["input_ids"], batch["attention_mask"])
        after = restored(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_lora_trains_only_the_adapters(tiny_llama2_dir):
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    module = make_decoder(tiny_llama2_dir, toy_specs(("intent",)), prompt_format="llama2", lora=lora)
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    module.answer_loss(batch_for(module, toy_examples()[:2], "train")).backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
    assert module.hparams.lora == lora  # plain data in checkpoints


def test_option_errors_are_one_line(tiny_llama2_dir):
    specs = toy_specs(("intent",))
    with pytest.raises(ValueError, match="prompt_format='chat': tokenizer .* has no chat template"):
        make_decoder(tiny_llama2_dir, specs, prompt_format="chat")
    # no paper prompt for 3 shots: the generic prompt, not an error
    assert make_decoder(tiny_llama2_dir, specs, prompt_format="llama2", shots=3).featurizer.template(None).shots == 3
    with pytest.raises(ValueError, match="load_in_4bit .* set lora and pretrained"):
        make_decoder(tiny_llama2_dir, specs, prompt_format="llama2", load_in_4bit=True)
    with pytest.raises(ValueError, match="candidates_per_pass: expected a positive number, got 0"):
        make_decoder(tiny_llama2_dir, specs, prompt_format="llama2", decoding="score", candidates_per_pass=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_load_in_4bit_needs_a_gpu(tiny_llama2_dir):
    module = DecoderGenerativeModule(
        backbone=str(tiny_llama2_dir),
        tasks=toy_specs(("intent",)),
        prompt_format="llama2",
        load_in_4bit=True,
        lora={"r": 4},
    )
    with pytest.raises(RuntimeError, match="load_in_4bit: .* needs a CUDA GPU"):
        module.configure_model()


def test_fsdp_ranks_above_zero_build_on_meta_and_rank_zero_loads(tmp_path, tiny_llama2_dir):
    """Under FSDP on several devices only rank 0 reads the weights; the strategy broadcasts them."""
    from lightning.pytorch.strategies import FSDPStrategy

    saved = tmp_path / "pretrained"
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_llama2_dir)).save_pretrained(saved)
    AutoTokenizer.from_pretrained(tiny_llama2_dir).save_pretrained(saved)
    weights = {}
    for rank in (1, 0):
        strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")] * 2)
        module = DecoderGenerativeModule(backbone=str(saved), tasks=toy_specs(("intent",)), prompt_format="llama2")
        module._trainer = SimpleNamespace(strategy=strategy, world_size=2, global_rank=rank, precision="bf16-mixed")
        module.configure_model()
        weights[rank] = module.backbone.model.norm.weight
        assert strategy.kwargs["sync_module_states"] is True and module._synced_gpus()
    assert weights[1].is_meta and not weights[0].is_meta
    reference = AutoModelForCausalLM.from_pretrained(saved).model.norm.weight
    torch.testing.assert_close(weights[0], reference)
    norm = torch.nn.Module()
    norm.weight = torch.nn.Parameter(torch.empty(3, device="meta"))
    strategy.kwargs["param_init_fn"](norm)  # what FSDP calls on ranks > 0 before the broadcast
    assert norm.weight.device.type == "cpu"


def test_every_fsdp_rank_stops_on_the_same_end_tokens(tmp_path, tiny_llama2_dir):
    """Ranks > 0 build from config.json on the meta device; they read generation_config.json as rank 0's
    from_pretrained does (Llama-3-Instruct: ``<|eot_id|>`` and ``<|end_of_text|>``), so every rank stops alike."""
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers import GenerationConfig

    from lit_clf.decoder.decoding.free import end_token_ids

    saved = tmp_path / "instruct"
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_llama2_dir)).save_pretrained(saved)
    AutoTokenizer.from_pretrained(tiny_llama2_dir).save_pretrained(saved)
    GenerationConfig(eos_token_id=[2, 7], bos_token_id=1).save_pretrained(saved)
    ends = {}
    for rank in (1, 0):
        strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")] * 2)
        module = DecoderGenerativeModule(backbone=str(saved), tasks=toy_specs(("intent",)), prompt_format="llama2")
        module._trainer = SimpleNamespace(strategy=strategy, world_size=2, global_rank=rank, precision="bf16-mixed")
        module.configure_model()
        ends[rank] = sorted(end_token_ids(module.backbone, module.tokenizer))
    assert ends[0] == ends[1] == [2, 7]


# ---------------------------------------------------------------------------------------------------------------------
# Configs: composed decoder rows, the FSDP trainer, the CPU recipes

FT_MODELS = ["llama2-7b", "llama2-70b", "llama3-8b", "llama3-70b"]
NO_FT_MODELS = ["llama2-7b-chat", "llama2-70b-chat", "llama3-8b-instruct", "llama3-70b-instruct"]
TASKS = [
    "newsgroups-topic20",
    "newsgroups-topic7",
    "newsgroups-joint",
    "massive-intent",
    "massive-slots",
    "massive-joint",
]
SHOTS = ["zero", "five"]


def compose(model: str, shots: str, task: str, fsdp: bool = False) -> list[str]:
    """The documented composition order: base, model, shots, task, then the trainer (configs/decoder/README.md)."""
    files = [DECODER_CONFIGS / name for name in ("base.yaml", f"model/{model}.yaml", f"shots/{shots}.yaml")]
    args = [arg for path in [*files, TASK_CONFIGS / f"{task}.yaml"] for arg in ("--config", str(path))]
    return args + (["--config", str(FSDP_CONFIG)] if fsdp else [])


def subcommand(model: str) -> str:
    return "fit" if model in FT_MODELS else "test"  # "w/o FT" rows evaluate the released instruct model


# Every model file with both shot settings; the task files cycle through the rows: every file is used.
ROWS = [(model, shots, TASKS[i % len(TASKS)]) for i, (model, shots) in enumerate(
    (model, shots) for model in FT_MODELS + NO_FT_MODELS for shots in SHOTS
)]  # fmt: skip


def test_every_config_file_is_in_a_tested_row():
    used = {f"model/{m}.yaml" for m, _, _ in ROWS} | {f"shots/{s}.yaml" for _, s, _ in ROWS} | {"base.yaml"}
    used |= {"loss/task.yaml"}  # tests/decoder/test_loss_weighting.py composes it
    used |= {"schedule/warmup-cosine.yaml"}  # tests/test_schedules.py composes it
    assert {str(p.relative_to(DECODER_CONFIGS)) for p in DECODER_CONFIGS.rglob("*.yaml")} == used
    assert {p.stem for p in TASK_CONFIGS.glob("*.yaml")} == {t for _, _, t in ROWS}


@pytest.mark.parametrize(("model", "shots", "task"), ROWS, ids=lambda v: str(v))
def test_composed_rows_parse(model, shots, task, capsys):
    run_cli(
        [subcommand(model), *compose(model, shots, task, fsdp=model.endswith(("70b", "70b-chat"))), "--print_config"]
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed_everything"] == 42
    init = printed["model"]["init_args"]
    assert printed["model"]["class_path"] == "lit_clf.decoder.DecoderGenerativeModule"
    assert init["backbone"].startswith("meta-llama/") and init["shots"] == (5 if shots == "five" else 0)
    # the paper's 16,384 (base.yaml) within each model's context window (issue: scale): Llama 2 4,096, Llama 3 8,192
    assert init["optimizer"]["init_args"]["lr"] == 1e-6 and init["max_length"] == (4096 if "llama2" in model else 8192)
    assert "tasks" not in init  # linked from the data
    assert printed["trainer"]["max_steps"] == (8000 if model in ("llama2-70b", "llama3-70b") else 4000)
    assert printed["data"]["init_args"]["batch_size"] == (1 if model.endswith(("70b", "70b-chat")) else 8)


# One run per model family x prompt format, both shot settings, both datasets, every task kind, fit and test;
# one swaps in the 8-bit AdamW of bitsandbytes (its optimizer states step on CPU too).
ADAMW_8BIT = "--model.init_args.optimizer={class_path: bitsandbytes.optim.AdamW8bit, init_args: {lr: 1.0e-6}}"
RUNS = [
    ("llama3-8b", "five", "massive-joint", []),
    ("llama2-70b", "zero", "newsgroups-topic7", [ADAMW_8BIT]),
    ("llama2-7b-chat", "five", "newsgroups-joint", []),
    ("llama3-70b-instruct", "zero", "massive-slots", []),
]


@pytest.mark.parametrize(("model", "shots", "task", "extra"), RUNS, ids=[" ".join(run[:3]) for run in RUNS])
def test_composed_rows_run_with_a_tiny_model(model, shots, task, extra, tmp_path, model_dirs, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs log (CSV and offline W&B) to ./runs
    prompt_format = yaml.safe_load((DECODER_CONFIGS / "model" / f"{model}.yaml").read_text())["model"]["init_args"]
    tiny = model_dirs[prompt_format["prompt_format"]]
    run_cli([subcommand(model), *compose(model, shots, task), *decoder_overrides(tmp_path, tiny, shared_data), *extra])
    (metrics,) = tmp_path.rglob("metrics.csv")
    header = metrics.read_text().splitlines()[0]
    task_file = yaml.safe_load((TASK_CONFIGS / f"{task}.yaml").read_text())
    tasks = task_file["data"]["init_args"]["tasks"]
    first_task = tasks[0]
    assert f"test/{first_task}_invalid_rate" in header
    # the CSV log is named after the run: runs/<dataset>-<model>-<tasks>-<shots>shot-<ft|noft>/version_0
    shot_count = 5 if shots == "five" else 0
    ft = "ft" if subcommand(model) == "fit" else "noft"
    assert metrics.parents[1].name == f"{task.split('-')[0]}-{tiny.name}-{'+'.join(tasks)}-{shot_count}shot-{ft}"
    if subcommand(model) == "fit":
        assert "train/loss" in header and f"val/{first_task}_invalid_rate" in header
        assert list(tmp_path.rglob("best.ckpt"))


def test_fsdp_trainer_config_instantiates_the_strategy():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    trainer = yaml.safe_load(FSDP_CONFIG.read_text())["trainer"]
    assert trainer["devices"] == 8 and trainer["precision"] == "bf16-mixed"
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    strategy = parser.instantiate(parser.parse_object({"strategy": trainer["strategy"]})).strategy
    assert isinstance(strategy, FSDPStrategy)
    assert str(strategy.sharding_strategy) == "ShardingStrategy.FULL_SHARD" and strategy._state_dict_type == "sharded"
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {LlamaDecoderLayer}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {LlamaDecoderLayer}


@pytest.mark.parametrize(
    ("name", "nodes", "hybrid", "precision"),
    [
        ("fsdp2-8xa100", 1, False, "bf16-mixed"),
        ("fsdp2-8xa100-70b", 1, False, "bf16-true"),
        ("fsdp2-2x8xa100", 2, False, "bf16-mixed"),
    ],
)
def test_fsdp2_trainer_configs_instantiate_the_strategy(name, nodes, hybrid, precision):
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import Strategy

    from lit_clf.sharding import FSDP2Strategy

    config = yaml.safe_load((REPO / "configs" / "trainer" / f"{name}.yaml").read_text())
    trainer = config["trainer"]
    assert (trainer["devices"], trainer.get("num_nodes", 1), trainer["precision"]) == (8, nodes, precision)
    assert config["data"]["init_args"]["batch_size"] == 1
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    strategy = parser.instantiate(parser.parse_object({"strategy": trainer["strategy"]})).strategy
    assert isinstance(strategy, FSDP2Strategy) and strategy.hybrid is hybrid
    assert (
        strategy.activation_checkpointing and strategy.reshard_after_forward and strategy._save_distributed_checkpoint
    )


@pytest.mark.parametrize("config", CPU_CONFIGS, ids=lambda p: p.name)
def test_cpu_recipes_parse(config, capsys):
    run_cli(["fit", "--config", str(config), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["backbone"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    data = printed["data"]["init_args"]
    assert data["max_train_examples"] == 4096 and data["max_examples"] is None and data["max_eval_examples"] is None
    assert printed["trainer"]["precision"] == "32-true" and printed["model"]["init_args"]["decoding"] == "constrained"


def test_lr_search_overlay_trains_on_a_subset_and_scores_a_dev_subset(capsys):
    recipe = REPO / "configs" / "massive" / "smollm2-135m-intent.yaml"
    run_cli(["fit", "-c", str(recipe), "-c", str(REPO / "configs" / "trainer" / "lr-search.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    data = printed["data"]["init_args"]
    assert (data["max_train_examples"], data["max_eval_examples"], data["batch_size"]) == (1024, 256, 16)
    assert printed["test_after_fit"] is False and printed["trainer"]["enable_checkpointing"] is False
    assert printed["trainer"]["logger"]["init_args"]["save_dir"] == "runs/lr-search"


def test_cpu_recipe_fits_tests_and_predicts(tmp_path, tiny_smollm_dir, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe logs to ./runs
    config = ["--config", str(REPO / "configs" / "massive" / "smollm2-135m-joint.yaml")]
    overrides = decoder_overrides(tmp_path, tiny_smollm_dir, shared_data)
    run_cli(["fit", *config, *overrides])
    (ckpt,) = tmp_path.rglob("best.ckpt")
    out = tmp_path / "predictions.jsonl"
    run_cli(["predict", *config, *overrides, f"--ckpt_path={ckpt}", f"--predictions.output_path={out}"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"id", "text", "intent", "slots"}
    assert set(rows[0]["slots"]) == {"gold", "pred", "raw", "valid"}


def test_five_shot_predictions_name_the_examples_of_each_prompt(tmp_path, tiny_smollm_dir, shared_data, monkeypatch):
    """A five-shot decoder's predictions file holds, per row, the examples its prompt showed (ids and labels, the
    seeded per-query draw), so that copying from the examples can be measured (lit_clf.analysis.shot_copying)."""
    from lit_clf.analysis import shot_copying
    from lit_clf.data.massive import MassiveDataModule
    from lit_clf.prompting.encoding import select_shots

    monkeypatch.chdir(tmp_path)
    config = ["--config", str(REPO / "configs" / "massive" / "smollm2-135m-joint.yaml")]
    five = ["--config", str(DECODER_CONFIGS / "shots" / "five.yaml")]
    out = tmp_path / "predictions.jsonl"
    overrides = decoder_overrides(tmp_path, tiny_smollm_dir, shared_data)
    run_cli(["predict", *config, *five, *overrides, f"--predictions.output_path={out}"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    data = MassiveDataModule(tasks=["intent", "slots"], data_dir=shared_data, max_examples=6, seed=42, download=False)
    data.setup("predict")
    train = {example.id: example for example in data.examples("train")}
    queries = {example.id: example for example in data.examples("test")}
    assert [row["id"] for row in rows] == list(queries)  # the split's order, not the longest-first batches'
    for row in rows:
        expected = select_shots(queries[row["id"]], data.examples("train"), 5, seed=42)
        assert [shot["id"] for shot in row["shots"]] == [example.id for example in expected]
        for shot in row["shots"]:
            assert shot["intent"] == train[shot["id"]].labels["intent"]
            assert shot["slots"] == list(train[shot["id"]].labels["slots"])
    assert shot_copying(rows, "intent")[0]["count"] == len(rows) == 6


def test_cpu_recipe_with_the_inline_slot_prompt_answers_validly(tmp_path, tiny_smollm_dir, shared_data, monkeypatch):
    """The consolidated recipe with configs/prompts' inline answer: trains on ``[type : words]`` answers, and its
    constrained test answers copy every input word and parse (no invalid answer); the run records the prompt."""
    monkeypatch.chdir(tmp_path)
    prompt = REPO / "configs" / "prompts" / "massive-intent+slots-inline-0shot.yaml"
    config = ["--config", str(REPO / "configs" / "massive" / "smollm2-135m-joint.yaml")]
    overrides = [*decoder_overrides(tmp_path, tiny_smollm_dir, shared_data), "--model.init_args.max_new_tokens=null"]
    out = tmp_path / "predictions.jsonl"
    run_cli(["fit", *config, *overrides, f"--model.init_args.prompt_file={prompt}"])
    (metrics,) = tmp_path.rglob("metrics.csv")
    scores = {k: v for row in csv.DictReader(metrics.open()) for k, v in row.items() if v and k.startswith("test/")}
    assert float(scores["test/slots_invalid_rate"]) == 0.0 and float(scores["test/intent_invalid_rate"]) == 0.0
    (ckpt,) = tmp_path.rglob("best.ckpt")
    run_cli(["predict", *config, *overrides, f"--ckpt_path={ckpt}", f"--predictions.output_path={out}"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        inline = json.loads(row["slots"]["raw"])["task2"]  # the consolidated JSON answer's slot field
        copied = [w for w in inline.replace("]", " ").split() if not w.startswith("[") and w != ":"]
        assert copied == row["text"].split() and row["slots"]["valid"]
        assert len(row["slots"]["pred"]) == len(row["text"].split())
    config_yaml = metrics.parent / "config.yaml"  # the fit's resolved config
    assert yaml.safe_load(config_yaml.read_text())["model"]["init_args"]["prompt_file"] == str(prompt)


def test_the_decoder_fits_and_tests_on_own_files_with_the_generic_prompt(tmp_path, tiny_smollm_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [
        (["John", "loves", "Paris"], ["B-person", "O", "B-location"], "positive"),
        (["Mary", "Ann", "hates", "rain"], ["B-person", "I-person", "O", "O"], "negative"),
        (["rain", "in", "Rome"], ["O", "O", "B-location"], "negative"),
    ]
    for name in ("train", "test"):
        lines = [json.dumps({"tokens": w, "tags": t, "label": s}) for w, t, s in rows * 2]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    config = ["--config", str(REPO / "configs" / "massive" / "smollm2-135m-intent.yaml")]
    overrides = [a for a in decoder_overrides(tmp_path, tiny_smollm_dir, tmp_path) if "max_examples" not in a]
    run_cli(
        [
            "fit",
            *config,
            *overrides,
            "--data=lit_clf.data.TextDataModule",
            "--data.init_args.label_columns={sentiment: label, ner: tags}",
            "--data.init_args.task_kinds={ner: token}",
            "--data.init_args.tasks=[sentiment, ner]",
            "--data.init_args.train=train.jsonl",
            "--data.init_args.test=test.jsonl",
            "--data.init_args.name=toy-ner",
            "--model.init_args.max_new_tokens=null",  # constrained decoding's own bound: whole answers
        ]
    )
    (metrics,) = tmp_path.rglob("metrics.csv")
    header = metrics.read_text().splitlines()[0]
    assert "test/sentiment_acc" in header and "test/ner_f1" in header and "test/ner_invalid_rate" in header
    # constrained decoding (the recipe's) writes valid answers with the generic prompt too
    from lit_clf.report.readers import read_metrics_csv

    values = read_metrics_csv(metrics)
    assert float(values["test/ner_invalid_rate"]) == 0.0 and float(values["test/sentiment_invalid_rate"]) == 0.0


@pytest.mark.parametrize("style", ["serial", "json"])
def test_the_decoder_fits_and_tests_a_multilabel_task_with_label_descriptions(
    tmp_path, tiny_smollm_dir, monkeypatch, style
):
    monkeypatch.chdir(tmp_path)
    rows = [("a heist at sea", ["crime", "adventure"]), ("love story", ["romance"]), ("a quiet film", [])] * 2
    for name in ("train", "test"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t, "g": g}) + "\n" for t, g in rows))
    config = ["--config", str(REPO / "configs" / "massive" / "smollm2-135m-intent.yaml")]
    overrides = [a for a in decoder_overrides(tmp_path, tiny_smollm_dir, tmp_path) if "max_examples" not in a]
    common = [
        *config,
        *overrides,
        "--data=lit_clf.data.TextDataModule",
        "--data.init_args.label_columns={genres: g}",
        "--data.init_args.task_kinds={genres: multilabel}",
        "--data.init_args.tasks=[genres]",
        "--data.init_args.train=train.jsonl",
        "--data.init_args.test=test.jsonl",
        "--model.init_args.max_new_tokens=null",
        f"--model.init_args.prompt_style={style}",
        "--model.init_args.label_descriptions={genres: {crime: 'a {crime} story', romance: love}}",
    ]
    run_cli(["fit", *common])
    (metrics,) = tmp_path.rglob("metrics.csv")
    from lit_clf.report.readers import read_metrics_csv

    values = read_metrics_csv(metrics)
    assert {"test/genres_f1", "test/genres_macro_f1", "test/genres_exact_match"} <= set(values)
    assert float(values["test/genres_invalid_rate"]) == 0.0  # constrained decoding: always a valid label set
    (ckpt,) = tmp_path.rglob("best.ckpt")
    out = tmp_path / "predictions.jsonl"
    run_cli(["predict", *common, f"--ckpt_path={ckpt}", f"--predictions.output_path={out}"])
    predicted = [json.loads(line)["genres"] for line in out.read_text().splitlines()]
    assert len(predicted) == len(rows) and all(p["valid"] for p in predicted)
    assert all(set(p["pred"]) <= {"adventure", "crime", "romance"} for p in predicted)
    assert predicted[0]["raw"].startswith("{" if style == "json" else "[")


def test_max_length_is_capped_to_the_models_context_window(tmp_path, tiny_llama2_dir, recwarn):
    """A tiny Llama with a 256-position window and max_length 1,024: capped with one warning naming both numbers; a
    long prompt has its text cut to fit, the answer kept; each stage logs the share of prompts it cut."""
    from transformers import LlamaConfig

    from lit_clf.loading import context_window

    folder = tmp_path / "window-256"
    config = AutoConfig.from_pretrained(tiny_llama2_dir)
    config.max_position_embeddings = 256
    config.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_llama2_dir).save_pretrained(folder)
    module = make_decoder(folder, toy_specs(("intent",)), prompt_format="llama2", max_length=1024)
    (warning,) = [w for w in recwarn if "context window" in str(w.message)]
    assert "max_length=1,024 is past the model's context window of 256 positions" in str(warning.message)
    assert module.featurizer.max_length == 256
    long = Example("long", " ".join(["word"] * 600), {"intent": "alarm_set"})
    short = toy_examples()[0]
    features = module.featurizer.featurize(
        [long, short], train=True, info=DatasetInfo("massive", toy_examples("train-"), seed=0)
    )
    assert [len(f["input_ids"]) <= 256 for f in features] == [True, True]
    answer = module.featurizer.encoder.answer_ids(long) + [module.tokenizer.eos_token_id]
    assert features[0]["input_ids"][-len(answer) :] == answer  # the answer whole, after the cut text
    batch = module.featurizer.collate(features)
    assert batch["truncated"].tolist() == [True, False]
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    module.training_step(batch, 0)
    assert logged["train/truncated_frac"] == 0.5
    # rope_scaling stated against max_position_embeddings widens the window; Llama 3.1's style states it already
    assert (
        context_window(LlamaConfig(max_position_embeddings=4096, rope_scaling={"rope_type": "linear", "factor": 2.0}))
        == 8192
    )
    llama31 = {
        "rope_type": "llama3",
        "factor": 8.0,
        "original_max_position_embeddings": 8192,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
    }
    assert context_window(LlamaConfig(max_position_embeddings=131072, rope_scaling=llama31)) == 131072
