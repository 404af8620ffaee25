"""``lit-clf export``: checkpoints (a file, a sharded folder) as Hugging Face folders that transformers reads and
that answer as the module did: a decoder with LoRA merged (AutoModelForCausalLM logits, constrained answers), a
token head as ``*ForTokenClassification``, a bias-free last-token head as ``*ForSequenceClassification``
(``pipeline("text-classification")``), several heads in the lit_clf layout."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed.checkpoint as dcp

from lit_clf.encoder.module import EncoderSeqTokenModule
from lit_clf.export import MANIFEST, load_exported
from lit_clf.run.cli import main
from tests.helpers import make_decoder, toy_examples, toy_specs

TEXTS = ["wake me up at five am", "what is the weather in paris", "play some jazz music"]


def hparams(module) -> dict:
    options = {k: v for k, v in dict(module.hparams).items() if k not in ("optimizer", "lr_scheduler")}
    return {**options, "_class_path": f"{type(module).__module__}.{type(module).__name__}"}


def save_file_checkpoint(module, path):
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams(module), "epoch": 0}, path)
    return path


def save_sharded_checkpoint(module, folder):
    """The layout Lightning's FSDP strategies write: the weights in DCP files, the rest in meta.pt."""
    dcp.save({"state_dict": module.state_dict()}, checkpoint_id=folder, no_dist=True)
    torch.save({"hyper_parameters": hparams(module), "epoch": 0}, folder / "meta.pt")
    return folder


def export(ckpt, out, *extra: str) -> None:
    main(["export", f"--ckpt_path={ckpt}", f"--out={out}", *extra])


def randomize_lora(module) -> None:
    """LoRA B starts at zero (a no-op adapter): give it values, so merging changes the weights."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)


def test_a_decoder_exports_merged_and_answers_as_the_module(tmp_path, tiny_smollm_dir):
    from transformers import AutoModelForCausalLM

    module = make_decoder(
        tiny_smollm_dir,
        toy_specs(("intent",)),
        decoding="constrained",
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0},
    )
    randomize_lora(module)
    module.eval()
    ckpt = save_file_checkpoint(module, tmp_path / "best.ckpt")
    out = tmp_path / "exported"
    export(ckpt, out, "--dtype=float32")
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", MANIFEST} <= files
    assert not any(name.startswith("adapter_") for name in files)  # merged, a plain model
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["layout"] == "causal-lm" and manifest["init_args"]["decoding"] == "constrained"
    assert [t["name"] for t in manifest["init_args"]["tasks"]] == ["intent"]

    prompt = module.featurizer.collate(module.featurizer.featurize(toy_examples()[:1], train=False))
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        want = module(prompt["input_ids"], prompt["attention_mask"])
        got = hf(input_ids=prompt["input_ids"], attention_mask=prompt["attention_mask"]).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    reloaded = load_exported(out)
    assert reloaded.predict_texts(TEXTS) == module.predict_texts(TEXTS)


def test_a_decoder_adapter_export_keeps_the_adapter_alone(tmp_path, tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(("intent",)), lora={"r": 2, "target_modules": ["q_proj"]})
    ckpt = save_file_checkpoint(module, tmp_path / "best.ckpt")
    export(ckpt, tmp_path / "adapter", "--merge_lora=false")
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", MANIFEST} <= files and "model.safetensors" not in files
    with pytest.raises(ValueError, match="a LoRA adapter folder; load it with peft on its base model"):
        load_exported(tmp_path / "adapter")


def heads_module(backbone, names, **options) -> EncoderSeqTokenModule:
    torch.manual_seed(0)
    module = EncoderSeqTokenModule(backbone=str(backbone), tasks=toy_specs(names), pretrained=False, **options)
    module.configure_model()
    return module.eval()


def test_a_token_head_from_a_sharded_checkpoint_is_a_token_classification_model(tmp_path, tiny_smollm_dir):
    from transformers import AutoModelForTokenClassification

    module = heads_module(tiny_smollm_dir, ("slots",), max_length=64)
    ckpt = save_sharded_checkpoint(module, tmp_path / "best.ckpt")
    out = tmp_path / "exported"
    export(ckpt, out)
    assert json.loads((out / MANIFEST).read_text())["layout"] == "token-classification"
    hf = AutoModelForTokenClassification.from_pretrained(out).eval()
    assert hf.config.id2label[0] == module.tasks[0].labels[0]
    batch = module.featurizer.collate(module.featurizer.featurize(toy_examples()[:1]))  # one row: no padding
    with torch.no_grad():
        want = module(batch["input_ids"], batch["attention_mask"])["slots"]
        got = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # lit_clf reads the folder back as a backbone, heads included
    again = EncoderSeqTokenModule(backbone=str(out), tasks=toy_specs(("slots",)), max_length=64)
    again.configure_model()
    assert again.eval().predict_texts(TEXTS) == module.predict_texts(TEXTS)


def test_a_bias_free_last_token_head_is_a_sequence_classifier_for_the_pipeline(tmp_path, tiny_smollm_dir):
    from transformers import pipeline

    module = heads_module(tiny_smollm_dir, ("intent",), max_length=64, head_bias=False)
    out = tmp_path / "exported"
    export(save_file_checkpoint(module, tmp_path / "best.ckpt"), out)
    assert json.loads((out / MANIFEST).read_text())["layout"] == "sequence-classification"
    classify = pipeline("text-classification", model=str(out), device="cpu")
    assert [answer["label"] for answer in classify(TEXTS)] == [row["intent"] for row in module.predict_texts(TEXTS)]


def test_several_heads_keep_the_lit_clf_layout(tmp_path, tiny_roberta_dir):
    module = heads_module(tiny_roberta_dir, ("intent", "slots"), max_length=64)
    out = tmp_path / "exported"
    export(save_file_checkpoint(module, tmp_path / "best.ckpt"), out)
    assert json.loads((out / MANIFEST).read_text())["layout"] == "lit-clf-heads"
    assert load_exported(out).predict_texts(TEXTS) == module.predict_texts(TEXTS)


def test_export_refuses_an_existing_folder_and_a_config_of_another_model(tmp_path, tiny_roberta_dir, capsys):
    module = heads_module(tiny_roberta_dir, ("intent",), max_length=64)
    ckpt = save_file_checkpoint(module, tmp_path / "best.ckpt")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    with pytest.raises(SystemExit):
        export(ckpt, tmp_path / "taken")
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "taken" / "x").read_text() == "keep"  # nothing already written is lost
    export(ckpt, tmp_path / "taken", "--overwrite")  # asked for: replaced by the export
    assert not (tmp_path / "taken" / "x").exists() and (tmp_path / "taken" / MANIFEST).is_file()
    config = tmp_path / "decoder.yaml"
    config.write_text("model:\n  class_path: lit_clf.decoder.DecoderGenerativeModule\n")
    with pytest.raises(SystemExit):
        export(ckpt, tmp_path / "new", f"--config={config}")
    assert "the checkpoint holds a EncoderSeqTokenModule" in capsys.readouterr().err
