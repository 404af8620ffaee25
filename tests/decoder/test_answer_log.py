"""The answer log (``answer_log``): an interrupted decoder test resumes from the answers logged so far."""

from __future__ import annotations

import csv
import json
import logging
import os

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from lit_clf.decoder.answer_log import content_identity
from lit_clf.decoder.decoding.base import Decoded
from lit_clf.prompting.answers import ParsedAnswer
from tests.helpers import ToyDataModule, make_decoder


def trainer(logger=False) -> L.Trainer:
    return L.Trainer(logger=logger, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


def scripted(module, data, calls: list[list[int]]):
    """Replace the module's decoding with a scripted one: gold answers for even indices, a wrong intent and
    shifted slots for odd ones (so the metrics are neither 0 nor 1); records each call's example indices."""
    examples = data.examples("test")

    def decode(batch, decoding=None):
        indices = batch["index"].tolist()
        calls.append(indices)
        rows = []
        for index in indices:
            labels = examples[index].labels
            slots = list(labels["slots"]) if index % 2 == 0 else ["Other", *labels["slots"][:-1]]
            intent = labels["intent"] if index % 2 == 0 else "alarm_set"
            answers = {"intent": ParsedAnswer(intent, True), "slots": ParsedAnswer(slots, index != 3, "")}
            rows.append(Decoded(f"answer {index}", answers))
        return rows

    module.decode = decode


def run_test(model_dir, log, calls, logger=False, **kwargs):
    data = ToyDataModule(tasks=["intent", "slots"], batch_size=2)
    module = make_decoder(
        model_dir, data.task_specs, prompt_format="chat", max_new_tokens=4, answer_log=str(log), **kwargs
    )
    scripted(module, data, calls)
    (metrics,) = trainer(logger).test(module, datamodule=data, verbose=False)
    return metrics


def read_rows(log):
    lines = log.read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_an_interrupted_test_resumes_from_the_answer_log_with_the_same_metrics(tiny_smollm_dir, tmp_path, caplog):
    log = tmp_path / "answers.jsonl"
    calls: list[list[int]] = []
    full = run_test(tiny_smollm_dir, log, calls)
    batches = list(calls)  # test batches grouped by length: [[1, 0], [2, 6], ...]
    assert len(batches) == 4 and sorted(sum(batches, [])) == list(range(8))
    assert (
        0 < full["test/intent_acc"] < 1 and 0 < full["test/slots_f1"] < 1 and full["test/slots_invalid_rate"] == 1 / 8
    )
    header, rows = read_rows(log)
    assert header["decoding"] == "free" and header["split"] == "test" and header["checkpoint"] is None
    assert [row["index"] for row in rows] == sum(batches, [])
    (three,) = [row for row in rows if row["index"] == 3]
    assert three["text"] == "answer 3" and three["answers"]["slots"][1] is False

    # killed while writing the second batch's second row: three whole rows and a cut one are left
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:4]) + lines[4][:20])
    calls.clear()
    csv_logger = CSVLogger(tmp_path / "logs", name="resumed")
    with caplog.at_level(logging.INFO):
        resumed = run_test(tiny_smollm_dir, log, calls, logger=csv_logger)
    assert f"answer log {log}: 3 answers there" in caplog.text  # the user sees the resume
    assert calls == batches[1:]  # the first batch read back; the second had only one of its examples logged
    assert resumed == full
    logged = {
        k: float(v) for row in csv.DictReader(open(csv_logger.log_dir + "/metrics.csv")) for k, v in row.items() if v
    }
    seconds = sum(row["s"] for row in rows if row["index"] in batches[0])  # the decoding time of the answers read back
    assert logged["cost/test_read_back"] == 2 and logged["cost/test_read_back_s"] == pytest.approx(seconds)
    _, rows = read_rows(log)  # the cut line is gone; the second batch's first example is logged twice
    assert [row["index"] for row in rows] == batches[0] + batches[1][:1] + sum(batches[1:], [])

    calls.clear()
    assert run_test(tiny_smollm_dir, log, calls) == full and calls == []  # all logged: nothing generated


def test_an_answer_log_of_another_setup_is_an_error(tiny_smollm_dir, tmp_path):
    log = tmp_path / "answers.jsonl"
    run_test(tiny_smollm_dir, log, [])
    with pytest.raises(ValueError, match=r"answer_log: .*answers of another setup \(decoding: 'free' there"):
        run_test(tiny_smollm_dir, log, [], decoding="constrained")
    template = tmp_path / "other.yaml"
    template.write_text('prompt: "Classify: {text}"\n')
    with pytest.raises(ValueError, match=r"example \d was answered for another prompt"):
        run_test(tiny_smollm_dir, log, [], prompt_file=str(template))
    log.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        run_test(tiny_smollm_dir, log, [])
    with pytest.raises(ValueError, match=r"answer_log: cannot read or write .*answers\.jsonl"):
        run_test(tiny_smollm_dir, log / "answers.jsonl", [])  # under a file, not a folder


def test_predict_reuses_the_logged_answers(tiny_smollm_dir, tmp_path):
    log = tmp_path / "answers.jsonl"
    data = ToyDataModule(tasks=["intent", "slots"], batch_size=4)

    def module():
        return make_decoder(
            tiny_smollm_dir, data.task_specs, prompt_format="chat", max_new_tokens=4, answer_log=str(log)
        )

    first = trainer().predict(module(), datamodule=data)  # real greedy generation, logged
    again = module()
    again.decode = lambda *args, **kwargs: pytest.fail("decoded again")
    second = trainer().predict(again, datamodule=data)
    assert second == first and sum(len(batch) for batch in first) == 8
    assert read_rows(log)[0]["split"] == "test"  # predict_split
    logged = log.read_text()
    new = make_decoder(tiny_smollm_dir, data.task_specs, prompt_format="chat", max_new_tokens=4, answer_log=str(log))
    trainer().predict(new, datamodule=data)
    assert new.predict_texts(["wake me up at nine"])[0].keys() == {"intent", "slots"}  # after the pass: no log
    assert log.read_text() == logged


def test_content_identity_tells_new_weights_in_place_and_ignores_a_move(tmp_path):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: sampled, not read whole
    first = content_identity(ckpt)
    assert first["files"] == 1 and first["bytes"] == 10_240_000
    moved = tmp_path / "moved" / "best.ckpt"
    moved.parent.mkdir()
    ckpt.rename(moved)
    os.utime(moved, ns=(1, 1))
    assert content_identity(moved) == first  # paths and times do not make a model
    moved.write_bytes(bytes(range(255, -1, -1)) * 40_000)  # a refit: same size, every weight another value
    assert content_identity(moved) != first
    sharded = tmp_path / "sharded.ckpt"  # FSDP: a folder of shards
    (sharded / "shards").mkdir(parents=True)
    (sharded / "meta.pt").write_bytes(b"abc")
    (sharded / "shards" / "0.distcp").write_bytes(b"de")
    assert content_identity(sharded)["bytes"] == 5 and content_identity(sharded)["files"] == 2
    assert content_identity(tmp_path / "missing.ckpt") is None


def test_new_weights_saved_over_a_model_folder_do_not_get_its_logged_answers(tmp_path):
    """A test without a checkpoint names its model by the folder: retrained weights saved over it are another
    model; the log's header says so (backbone_content) instead of handing back the old answers."""
    from transformers import AutoModelForCausalLM

    from lit_clf.decoder.answer_log import AnswerLog, log_header

    model = tmp_path / "model"
    torch.manual_seed(0)
    tiny = AutoModelForCausalLM.from_config(_tiny_config())
    tiny.save_pretrained(model)
    hparams = {"backbone": str(model), "pretrained": True}
    log = tmp_path / "answers.jsonl"
    AnswerLog(log, log_header(hparams, None, "free", "test"))
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(_tiny_config()).save_pretrained(model)  # retrained, saved in place
    with pytest.raises(ValueError, match=r"answers of another setup \(backbone_content: "):
        AnswerLog(log, log_header(hparams, None, "free", "test"))


def _tiny_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32,
    )  # fmt: skip
