"""The benchmark scripts in bench/: their timing helpers, their --help, and the HF peer end to end on a tiny model."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

from tests.helpers import REPO

BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))  # the scripts import peer_timing as their neighbour

import peer_timing  # noqa: E402


def run_script(name: str, *args: str, monkeypatch) -> None:
    """``python bench/<name> ARGS`` in this process."""
    monkeypatch.setattr(sys, "argv", [str(BENCH / name), *args])
    runpy.run_path(str(BENCH / name), run_name="__main__")


def test_timing_helpers_read_time_and_rotate_the_sides():
    assert peer_timing.clock("1:02:03") == 3723 and peer_timing.clock("3:07.50") == 187.5
    order = []
    runs = peer_timing.alternate(["a", "b", "c"], 2, lambda side: order.append(side) or {"s": float(len(order))})
    assert order == ["a", "b", "c", "b", "c", "a"]
    assert runs["a"] == [{"s": 1.0}, {"s": 6.0}]
    assert peer_timing.summary(runs)["medians"] == {"a": {"s": 3.5}, "b": {"s": 3.0}, "c": {"s": 4.0}}


@pytest.mark.parametrize("name", sorted(p.name for p in BENCH.glob("*.py") if p.name != "peer_timing.py"))
def test_every_script_explains_its_options(name, monkeypatch, capsys):
    if name == "trl_sft_intent.py":
        pytest.importorskip("trl", reason="the TRL peer needs `pip install 'lit_clf[bench]'`")
    with pytest.raises(SystemExit) as done:
        run_script(name, "--help", monkeypatch=monkeypatch)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: " + name in out
    # the 8B benchmark builds its model from a config: it names a tokenizer, every other script a model
    assert ("--tokenizer" if name == "llama8b_full_ft.py" else "--model") in out


def test_the_hf_peer_trains_and_scores_in_its_own_prediction_order(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    model_dir = tmp_path / "model"
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_bert_dir)).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(model_dir)
    # One word decides the intent; lengths differ, so length grouping reorders the predictions.
    words = {"alarm_set": "alarm", "play_music": "music", "weather_query": "weather"}
    rows = [
        {"partition": partition, "utt": " ".join(["please"] * (i % 5) + [word]), "intent": intent}
        for partition, count in (("train", 8), ("test", 4))
        for intent, word in words.items()
        for i in range(count)
    ]
    data = tmp_path / "en-US.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_script(
        "hf_trainer_intent.py", "--model", str(model_dir), "--data", str(data), "--epochs", "30",
        "--batch-size", "4", "--lr", "3e-3", monkeypatch=monkeypatch,
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["side"] == "hf-trainer" and result["optim"] == "adamw_torch_fused"
    assert result["train_samples_per_s"] > 0
    assert result["test_intent_acc"] == 1.0
