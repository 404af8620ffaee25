"""Inline span answers (``wake me up at [time : five am]``): render, parse, templates, constrained graph, budget."""

from __future__ import annotations

import json

import pytest

from lit_clf.data.massive import parse_slot_labels
from lit_clf.data.tasks import OTHER, Example, TaskSpec, collect_labels
from lit_clf.decoder.decoding.constrained import AnswerConstraint
from lit_clf.prompting.answers import parse_answer, render_answer
from lit_clf.prompting.inline import parse_inline, render_inline, span_types, spans_of, word_labels_of
from lit_clf.prompting.templates import load_template

SLOTS = TaskSpec("slots", "token", (OTHER, "date", "person", "time"))
NER = TaskSpec("ner", "token", ("O", "B-location", "B-person", "I-location", "I-person"), scheme="bio")
INTENT = TaskSpec("intent", "sequence", ("alarm_set", "play_music"))


def massive_rows(shared_data) -> list[dict]:
    path = shared_data / "massive" / "en-US.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_inline_answers_are_massives_own_annotation(shared_data):
    """Every MASSIVE en-US row: the parser reads ``annot_utt`` as the dataset reader does, and rendering the word
    labels gives ``annot_utt`` back, except where two spans of one type touch (one run of labels, one span)."""
    rows = massive_rows(shared_data)
    examples = [
        Example(row["id"], row["utt"], {"slots": parse_slot_labels(row["annot_utt"], row["utt"])}) for row in rows
    ]
    task = TaskSpec("slots", "token", collect_labels(examples, "slots", "token"))
    different = 0
    for row, example in zip(rows, examples):
        gold = list(example.labels["slots"])
        assert parse_inline(row["annot_utt"], task, len(example.words)) == (gold, "")
        rendered = render_inline(task, example.words, gold)
        assert parse_inline(rendered, task, len(example.words)) == (gold, "")
        if rendered != " ".join(row["annot_utt"].split()):
            different += 1
            assert len(spans_of(task, gold)) < row["annot_utt"].count("[")  # merged touching spans, nothing else
    assert len(rows) == 16_521 and different < 0.01 * len(rows)


def test_spans_follow_the_tasks_scheme():
    assert span_types(SLOTS) == ("date", "person", "time") and span_types(NER) == ("location", "person")
    runs = [OTHER, "time", "time", "date", OTHER]
    assert spans_of(SLOTS, runs) == [(1, 3, "time"), (3, 4, "date")]
    assert render_inline(SLOTS, "wake me at five today".split(), runs) == "wake [time : me at] [date : five] today"
    bio = ["B-person", "I-person", "B-person", "O", "I-location"]  # a stray I- opens a span, as seqeval reads it
    assert spans_of(NER, bio) == [(0, 2, "person"), (2, 3, "person"), (4, 5, "location")]
    assert render_inline(NER, "ada lovelace bob in paris".split(), bio) == (
        "[person : ada lovelace] [person : bob] in [location : paris]"
    )
    assert word_labels_of(NER, 5, spans_of(NER, bio)) == ["B-person", "I-person", "B-person", "O", "B-location"]
    with pytest.raises(ValueError, match="2 word labels for 3 words"):
        render_inline(SLOTS, ["a", "b", "c"], [OTHER, OTHER])


@pytest.mark.parametrize(
    ("text", "labels", "problem"),
    [
        ("wake me [TIME :  at five ]", [OTHER, OTHER, "time", "time"], ""),  # case and spacing
        ("Slots: wake me at [time : five]", [OTHER, OTHER, OTHER, "time"], ""),  # the repeated cue
        ("wake me at [time : 5:30]\nand more lines", [OTHER, OTHER, OTHER, "time"], ""),  # a colon in a word
        ("wake me at [alarm : five]", [OTHER] * 4, "unknown span type 'alarm'"),
        ("wake me at [time five]", [OTHER] * 5, "5 words for 4"),  # no colon: not a span, plain words
        ("wake me [time : at five", [OTHER] * 6, "6 words for 4"),  # unterminated: plain words
        ("", [], "empty output"),
    ],
)
def test_parsing_inline_answers(text, labels, problem):
    parsed = parse_answer(text, [SLOTS], num_words=4, token_format="inline")["slots"]
    assert (parsed.value, parsed.valid, parsed.reason) == (labels, not problem, problem)


@pytest.mark.parametrize("style", ["serial", "json"])
def test_inline_answers_in_both_styles_round_trip(style):
    example = Example("x", 'call "ada" at five', {"intent": "alarm_set", "slots": (OTHER, "person", OTHER, "time")})
    answer = render_answer(example, [INTENT, SLOTS], style=style, token_format="inline")
    expected = {
        "serial": 'intent: alarm_set\nslots: call [person : "ada"] at [time : five]',
        "json": '{"task1": "alarm_set", "task2": "call [person : \\"ada\\"] at [time : five]"}',
    }[style]
    assert answer == expected
    parsed = parse_answer(answer, [INTENT, SLOTS], num_words=4, style=style, token_format="inline")
    assert parsed["slots"].value == list(example.labels["slots"]) and parsed["slots"].valid
    as_list = parse_answer('{"task1": "alarm_set", "task2": ["Other"]}', [INTENT, SLOTS], token_format="inline")
    assert not as_list["slots"].valid and "inline answer string" in as_list["slots"].reason


def test_prompt_files_choose_the_token_format(tmp_path):
    good = tmp_path / "inline.yaml"
    good.write_text("prompt: 'Tag {text} with {labels_slots}'\ntoken_format: inline\n")
    assert load_template(good, ["slots"], 0).token_format == "inline"
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompt: 'Tag {text}'\ntoken_format: bio\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: token_format: expected one of labels, inline, got 'bio'"):
        load_template(bad, ["slots"], 0)


def all_inline_answers(task: TaskSpec, words: tuple[str, ...]) -> set[str]:
    """Every answer ``render_inline`` can write for ``words``, by brute force over the word labels."""
    import itertools

    return {render_inline(task, words, labels) for labels in itertools.product(task.labels, repeat=len(words))}


@pytest.mark.parametrize("task", [SLOTS, NER], ids=["runs", "bio"])
def test_constrained_graph_is_exactly_the_rendered_answers(task):
    """The graph accepts every rendering of every label sequence and nothing else among the texts that differ
    from one by a span boundary, a type or a word (in particular, in ``runs``, two touching spans of one type)."""
    words = ("play", '"b"', "song")
    graph = AnswerConstraint((task,), token_format="inline", words=words).graph()
    valid = all_inline_answers(task, words)
    assert all(graph.matches(text) for text in valid)
    kind = span_types(task)[0]
    near_misses = {
        f'[{kind} : play] [{kind} : "b"] song',  # touching spans of one type: one span in runs
        f'[{kind} : play "b" song',  # unterminated
        f'[{kind} : play]"b" song',
        "play b song",  # a word changed
        'play "b"',  # a word missing
        '[other : play] "b" song',  # unknown type
    }
    for text in near_misses:
        assert graph.matches(text) == (text in valid), text
    assert (f'[{kind} : play] [{kind} : "b"] song' in valid) == (task.scheme == "bio")
    quoted = AnswerConstraint((INTENT, task), style="json", token_format="inline", words=words).graph()
    example = Example("x", " ".join(words), {"intent": "play_music", task.name: (task.labels[1],) * 3})
    assert quoted.matches(render_answer(example, [INTENT, task], token_format="inline"))


def test_inline_constraint_needs_the_words():
    with pytest.raises(ValueError, match="needs the input's words"):
        AnswerConstraint((SLOTS,), num_words=3, token_format="inline")
    with pytest.raises(ValueError, match="num_words: 2, but 3 words"):
        AnswerConstraint((SLOTS,), num_words=2, token_format="inline", words=("a", "b", "c"))
    assert AnswerConstraint((SLOTS,), token_format="inline", words=["a", "b"]).num_words == 2


def test_structured_output_asks_api_models_for_an_inline_string():
    from lit_clf.api.schema import answer_schema

    schema = answer_schema([INTENT, SLOTS], ("task1", "task2"), num_words=3, token_format="inline")
    assert schema["properties"]["task2"] == {"type": "string"}
    listed = answer_schema([INTENT, SLOTS], ("task1", "task2"), num_words=3)
    assert listed["properties"]["task2"]["minItems"] == 3
