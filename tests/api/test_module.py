"""ChatApiModule against a real OpenAI-compatible server on the loopback address: exact metrics, retries, the cache,
a killed run resumed, and the API key kept out of every file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lit_clf.api.cache import ResponseCache, request_key
from lit_clf.api.schema import answer_schema
from lit_clf.data.tasks import TaskSpec
from lit_clf.report.readers import read_metrics_csv
from tests.helpers import REPO, run_cli, run_cli_error

pytest.importorskip("openai")

KEY = "sk-test-a1b2c3d4e5f6-never-saved"
TRAIN = [
    ("the battery died after a day", "negative"),
    ("great screen and fast", "positive"),
    ("support never answered", "negative"),
    ("refund arrived quickly", "positive"),
    ("the case cracked", "negative"),
    ("i love the sound", "positive"),
]
TEST = [
    ("good price and fast shipping", "positive"),
    ("a great keyboard", "positive"),
    ("the screen flickers", "negative"),
    ("it broke in a week", "negative"),
]


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_CLF_TEST_KEY", KEY)
    for name, rows in (("train", TRAIN), ("test", TEST)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return tmp_path


def api_args(tmp_path, server, *extra: str, wandb: bool = False) -> list[str]:
    """``lit-clf test`` of the GPT-4o config on the files, against ``server``; the CSV log only unless ``wandb``."""
    loggers = (
        [] if wandb else ["--trainer.logger=lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir=runs"]
    )
    return [
        "test",
        f"--config={REPO / 'configs' / 'api' / 'base.yaml'}",
        f"--config={REPO / 'configs' / 'api' / 'model' / 'gpt-4o.yaml'}",
        "--data=lit_clf.data.TextDataModule",
        "--data.init_args.train=train.jsonl",
        "--data.init_args.test=test.jsonl",
        "--data.init_args.label_columns={sentiment: label}",
        "--data.init_args.tasks=[sentiment]",
        "--data.init_args.eval_batch_size=2",
        f"--model.init_args.base_url={server.url}",
        "--model.init_args.api_key_env=LIT_CLF_TEST_KEY",
        f"--model.init_args.cache_dir={tmp_path / 'cache'}",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        *loggers,
        *extra,
    ]


def logged(tmp_path) -> dict[str, float]:
    (metrics,) = sorted(tmp_path.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)[-1:]
    return {k: float(v) for k, v in read_metrics_csv(metrics).items() if k.startswith("test/")}


def test_exact_metrics_for_scripted_answers_and_the_key_stays_out_of_files(files, chat_server):
    chat_server.script = {
        "good price and fast shipping": "positive",  # right
        "a great keyboard": "Positive.",  # right: case and punctuation are tolerated
        "the screen flickers": "I would say neutral",  # invalid: no label
        "it broke in a week": "positive",  # valid, wrong
    }
    run_cli(api_args(files, chat_server, wandb=True))
    metrics = logged(files)
    assert metrics["test/sentiment_acc"] == 0.5 and metrics["test/sentiment_invalid_rate"] == 0.25
    assert metrics["test/api_requests"] == 4 and metrics["test/api_cache_hits"] == 0
    prompt_tokens = sum(len(m["content"].split()) for body in chat_server.requests for m in body["messages"])
    assert metrics["test/api_prompt_tokens"] == prompt_tokens
    completion = metrics["test/api_completion_tokens"]
    assert metrics["test/api_cost_usd"] == pytest.approx((prompt_tokens * 2.5 + completion * 10.0) / 1e6)
    body = chat_server.requests[0]
    assert body["model"] == "gpt-4o-2024-08-06" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    assert (
        "classify the text as one of the labels in the list ['negative', 'positive']" in body["messages"][-1]["content"]
    )
    assert set(chat_server.auth) == {f"Bearer {KEY}"}  # the key reached the server...
    for path in files.rglob("*"):  # ...and no file: config.yaml, hparams, metrics, W&B files, the cache
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_json_answers_with_structured_output(files, chat_server):
    chat_server.script = {"it broke in a week": '{"sentiment": "negative"'}  # cut off: malformed JSON
    run_cli(
        api_args(files, chat_server, "--model.init_args.prompt_style=json", "--model.init_args.structured_output=true")
    )
    metrics = logged(files)
    assert metrics["test/sentiment_acc"] == 0.75 and metrics["test/sentiment_invalid_rate"] == 0.25
    schema = chat_server.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"] == {"sentiment": {"type": "string", "enum": ["negative", "positive"]}}


def test_requests_in_flight_never_exceed_the_concurrency(files, chat_server):
    chat_server.delay = 0.3
    run_cli(api_args(files, chat_server, "--model.init_args.concurrency=2", "--data.init_args.eval_batch_size=4"))
    assert chat_server.most_in_flight == 2 and len(chat_server.requests) == len(TEST)


def test_rate_limits_and_server_errors_are_retried(files, chat_server):
    chat_server.failures = [429, 500, 429, 503]
    with pytest.warns(UserWarning, match=rf"test: {len(TEST) + 4} requests sent for {len(TEST)} answers \(4 retried"):
        run_cli(api_args(files, chat_server, "--model.init_args.concurrency=1"))
    assert chat_server.attempts == len(TEST) + 4 and len(chat_server.requests) == len(TEST)
    scores = logged(files)
    assert scores["test/sentiment_acc"] == 1.0  # the keyword model is right on every test text
    assert (scores["test/api_attempts"], scores["test/api_requests"]) == (len(TEST) + 4, len(TEST))  # counted


def test_a_request_that_keeps_failing_stops_the_run_with_one_line(files, chat_server, capsys, monkeypatch):
    chat_server.failures = [500] * 50
    args = api_args(files, chat_server, "--model.init_args.max_retries=2", "--model.init_args.concurrency=1")
    line = run_cli_error(args, capsys, monkeypatch)
    assert line.startswith(f"lit-clf: error: {chat_server.url} (gpt-4o-2024-08-06): HTTP 500 after 2 retries")
    assert "rerun to resume" in line and chat_server.attempts == 3


def test_a_missing_key_is_one_line(files, chat_server, capsys, monkeypatch):
    monkeypatch.delenv("LIT_CLF_TEST_KEY")
    line = run_cli_error(api_args(files, chat_server), capsys, monkeypatch)
    assert "api_key_env: the environment variable LIT_CLF_TEST_KEY is not set" in line


def test_a_rerun_is_answered_from_the_cache(files, chat_server):
    run_cli(api_args(files, chat_server))
    first = logged(files)
    assert len(chat_server.requests) == len(TEST)
    run_cli(api_args(files, chat_server))
    assert len(chat_server.requests) == len(TEST)  # zero new requests
    second = logged(files)
    assert second["test/api_cache_hits"] == len(TEST) and second["test/api_requests"] == 0
    assert second["test/sentiment_acc"] == first["test/sentiment_acc"] and second["test/api_cost_usd"] == 0.0


def test_a_killed_run_resumes_without_repeating_paid_calls(files, chat_server):
    chat_server.block_after = 3  # the 4th request hangs: the run is killed while it waits
    args = api_args(files, chat_server, "--model.init_args.concurrency=1", "--trainer.logger=false")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "lit_clf", *args], cwd=files, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while chat_server.attempts < 4 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert chat_server.attempts == 4, "the run did not reach its 4th request"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert len(list((files / "cache").rglob("*.json"))) == 3  # whole entries only
    chat_server.block_after = None
    chat_server.release.set()
    answered = len(chat_server.requests)
    run_cli(api_args(files, chat_server, "--model.init_args.concurrency=1"))
    assert len(chat_server.requests) - answered == len(TEST) - 3  # only the unanswered ones are asked again
    assert logged(files)["test/api_cache_hits"] == 3


def test_few_shot_predictions_name_the_examples_of_each_prompt(files, chat_server):
    """The API rows of Table 3 are five-shot too: their predictions name each prompt's examples, the ones the
    request's messages hold (lit_clf.analysis.shot_copying reads them). Three shots: the files' pool is 5."""
    out = files / "predictions.jsonl"
    args = api_args(files, chat_server, "--model.init_args.shots=3", f"--predictions.output_path={out}")
    run_cli(["predict", *args[1:]])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["text"] for row in rows] == [text for text, _ in TEST]
    prompts = [json.dumps(request["messages"]) for request in chat_server.requests]
    for row in rows:
        (prompt,) = [p for p in prompts if json.dumps(row["text"])[1:-1] in p]  # the request that asked this row
        shown = [i for i, (text, _) in enumerate(TRAIN) if text in prompt]
        assert sorted(int(shot["id"].removeprefix("train/")) for shot in row["shots"]) == shown and len(shown) == 3
        assert all(shot["sentiment"] == TRAIN[int(shot["id"].removeprefix("train/"))][1] for shot in row["shots"])


def test_fit_is_refused(files, chat_server, capsys, monkeypatch):
    args = ["fit", *api_args(files, chat_server)[1:]]
    assert "use lit-clf test or predict, not fit" in run_cli_error(args, capsys, monkeypatch)


def test_cache_keys_and_atomic_entries(tmp_path):
    messages = [{"role": "user", "content": "hi"}]
    key = request_key("m", messages, {"temperature": 0.0})
    assert key == request_key("m", [dict(messages[0])], {"temperature": 0.0})
    assert key != request_key("m", messages, {"temperature": 0.5}) != request_key("n", messages, {"temperature": 0.0})
    cache = ResponseCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, {"text": "ok", "prompt_tokens": 1})
    assert cache.get(key) == {"text": "ok", "prompt_tokens": 1}
    cache.path(key).write_text("{broken")
    assert cache.get(key) is None  # a damaged entry is asked again, not trusted
    assert not list(tmp_path.rglob(".tmp-*"))


def test_the_schema_admits_only_labels():
    tasks = [
        TaskSpec("intent", "sequence", ("a", "b")),
        TaskSpec("genres", "multilabel", ("x", "y")),
        TaskSpec("slots", "token", ("Other", "t")),
    ]
    schema = answer_schema(tasks, ("task1", "task2", "task3"), num_words=2)
    assert schema["required"] == ["task1", "task2", "task3"] and schema["additionalProperties"] is False
    assert schema["properties"]["task1"] == {"type": "string", "enum": ["a", "b"]}
    assert schema["properties"]["task2"] == {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}}
    assert schema["properties"]["task3"]["minItems"] == schema["properties"]["task3"]["maxItems"] == 2


@pytest.mark.parametrize(
    ("model", "task", "shots"),
    [
        ("gpt-3.5-turbo", "massive-intent", "zero"),
        ("gpt-4", "newsgroups-joint", "five"),
        ("gpt-4o", "massive-joint", "zero"),
    ],
)
def test_the_papers_gpt_rows_compose(model, task, shots, capsys):
    """The GPT rows of Table 3: base + model + task (+ five-shot) files resolve to an API run of the paper's prompt
    (every model file and both shots files appear here)."""
    files = ["api/base.yaml", f"api/model/{model}.yaml", f"task/{task}.yaml", f"decoder/shots/{shots}.yaml"]
    run_cli(["test", *[f"--config={REPO / 'configs' / name}" for name in files], "--print_config"])
    import yaml

    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "lit_clf.api.ChatApiModule"
    args = printed["model"]["init_args"]
    assert args["backbone"].startswith(model) and args["shots"] == (5 if shots == "five" else 0)
    assert args["temperature"] == 0.0 and set(args["prices"]) == {"input", "output"}


def test_seed_reaches_the_server_and_a_slow_server_times_out_with_one_line(files, chat_server, capsys, monkeypatch):
    run_cli(api_args(files, chat_server, "--model.init_args.seed=7", "--model.init_args.max_tokens=null"))
    assert chat_server.requests[0]["seed"] == 7 and "max_tokens" not in chat_server.requests[0]
    chat_server.delay = 3.0
    args = api_args(files, chat_server, "--model.init_args.timeout=0.5", "--model.init_args.max_retries=0")
    args += [f"--model.init_args.cache_dir={files / 'other-cache'}"]  # not answered from the first run's cache
    line = run_cli_error(args, capsys, monkeypatch)
    assert line.startswith(f"lit-clf: error: {chat_server.url} (gpt-4o-2024-08-06): Request timed out")
    assert "after 0 retries" in line


@pytest.mark.parametrize("value", ["sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", "my key", "x" * 80])
def test_a_key_given_as_api_key_env_is_refused_unechoed_and_unwritten(value, files, chat_server, capsys, monkeypatch):
    """A likely slip (the key itself instead of the variable's name): one line that does not echo it, nothing
    written (config.yaml, hparams.yaml, metrics.csv), no request made."""
    args = [a for a in api_args(files, chat_server) if not a.startswith("--model.init_args.api_key_env=")]
    line = run_cli_error([*args, f"--model.init_args.api_key_env={value}"], capsys, monkeypatch)
    assert "api_key_env: expected the NAME of an environment variable" in line and value not in line
    assert not [p for p in files.rglob("*") if p.name in ("config.yaml", "hparams.yaml", "metrics.csv")]
    assert value not in capsys.readouterr().err
    assert chat_server.requests == []


def test_variable_names_pass_the_key_check():
    from lit_clf.api.client import check_key_env

    for name in ("OPENAI_API_KEY", "LIT_CLF_TEST_KEY", "_KEY2", None):
        check_key_env(name)
