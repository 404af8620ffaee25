"""Answer syntax: rendering gold answers and reading generations back, including malformed and adversarial ones."""

from __future__ import annotations

import random

import pytest

from lit_clf.data.tasks import OTHER, Example, TaskSpec
from lit_clf.prompting.answers import (
    ParsedAnswer,
    default_keys,
    parse_answer,
    parse_json_answer,
    parse_label,
    parse_label_list,
    parse_serial_answer,
    parse_word_labels,
    render_answer,
    render_word_labels,
)

TOPIC20 = ("alt.atheism", "comp.graphics", "rec.autos", "sci.med", "talk.politics.misc", "talk.religion.misc")
TOPIC7 = ("alt", "comp", "rec", "sci", "talk")
INTENT = TaskSpec("intent", "sequence", ("alarm_set", "weather_query"))
SLOTS = TaskSpec("slots", "token", (OTHER, "date", "time"))
GENRES = TaskSpec("genres", "multilabel", ("crime", "rec.autos", "romance"))
EXAMPLE = Example(
    "1",
    "wake me at nine",
    {"intent": "alarm_set", "slots": (OTHER, OTHER, OTHER, "time"), "genres": ("romance", "crime")},
)


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


def test_render_single_tasks():
    assert render_answer(EXAMPLE, [INTENT]) == "alarm_set"
    assert render_answer(EXAMPLE, [SLOTS]) == '["Other", "Other", "Other", "time"]'
    assert render_word_labels(["Other", "día"]) == '["Other", "día"]'  # non-ASCII kept as is


def test_render_multi_task_json_keys_in_task_order():
    assert default_keys(2) == ("task1", "task2")
    assert (
        render_answer(EXAMPLE, [INTENT, SLOTS])
        == '{"task1": "alarm_set", "task2": ["Other", "Other", "Other", "time"]}'
    )
    assert render_answer(EXAMPLE, [SLOTS, INTENT], keys=("a", "b")) == (
        '{"a": ["Other", "Other", "Other", "time"], "b": "alarm_set"}'
    )
    with pytest.raises(ValueError, match="one JSON key per task"):
        render_answer(EXAMPLE, [INTENT, SLOTS], keys=("task1",))


def test_render_label_sets_and_styles():
    assert render_answer(EXAMPLE, [GENRES]) == '["crime", "romance"]'  # the label list's order, whatever the data's
    assert render_answer(EXAMPLE, [INTENT], style="json") == '{"task1": "alarm_set"}'
    assert render_answer(EXAMPLE, [INTENT, GENRES], ("intent", "genres"), "json") == (
        '{"intent": "alarm_set", "genres": ["crime", "romance"]}'
    )
    assert render_answer(EXAMPLE, [INTENT, GENRES], style="serial") == 'intent: alarm_set\ngenres: ["crime", "romance"]'
    with pytest.raises(ValueError, match="answer style: expected one of serial, json, got 'yaml'"):
        render_answer(EXAMPLE, [INTENT], style="yaml")


@pytest.mark.parametrize("style", [None, "serial", "json"])
@pytest.mark.parametrize("tasks", [[INTENT], [SLOTS], [GENRES], [INTENT, SLOTS], [SLOTS, INTENT, GENRES]])
def test_rendered_answers_parse_back(tasks, style):
    text = render_answer(EXAMPLE, tasks, style=style)
    parsed = parse_answer(text, tasks, num_words=len(EXAMPLE.words), style=style)
    assert parsed == {task.name: ParsedAnswer(_gold(task), True) for task in tasks}


def _gold(task: TaskSpec):
    value = EXAMPLE.labels[task.name]
    if task.kind == "multilabel":
        return [label for label in task.labels if label in value]
    return value if task.kind == "sequence" else list(value)


# ---------------------------------------------------------------------------------------------------------------------
# Label sets and serial answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["crime", "romance"]', ParsedAnswer(["crime", "romance"], True)),
        ('["romance", "crime", "romance"]', ParsedAnswer(["crime", "romance"], True)),  # a set: order, repeats
        ("[]", ParsedAnswer([], True)),
        ("Labels: ['Rec.Autos',]", ParsedAnswer(["rec.autos"], True)),
        ('["crime", "heist"]', ParsedAnswer(["crime"], False, "unknown label 'heist'")),
        ("crime, romance", ParsedAnswer(["crime", "romance"], False, "not a list")),
        ('["crime", "rom', ParsedAnswer(["crime"], False, "unterminated list")),
        ("", ParsedAnswer([], False, "empty output")),
    ],
)
def test_label_lists(text, expected):
    assert parse_label_list(text, GENRES.labels) == expected


def test_serial_answers_read_each_task_from_its_line():
    tasks = [INTENT, GENRES]
    assert parse_serial_answer("genres: []\nINTENT: weather_query", tasks) == {
        "intent": ParsedAnswer("weather_query", True),
        "genres": ParsedAnswer([], True),
    }
    parsed = parse_serial_answer("intent: alarm_set and more", tasks)
    assert parsed["intent"] == ParsedAnswer("alarm_set", True)
    assert parsed["genres"] == ParsedAnswer([], False, "no line genres: ...")
    assert parse_serial_answer(None, tasks)["intent"].valid is False


# ---------------------------------------------------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize(
    "text",
    [
        "rec.autos",
        "  Rec.Autos \n",
        "'rec.autos'",
        '"rec.autos".',
        "`rec.autos`",
        "**rec.autos**",
        "[rec.autos]",
        "Label: rec.autos",
        "label:rec.autos",
        "\n\nrec.autos\n\nExplanation: the post is about a car.",
        "rec.autos because it mentions a car",
        "rec.autos. The post is about a car.",
        "rec.autos</s>",
    ],
)
def test_label_valid(text):
    assert parse_label(text, TOPIC20) == ParsedAnswer("rec.autos", True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("rec.autoss", "unknown label 'rec.autoss'"),
        ("rec.autos.misc", "unknown label 'rec.autos.misc'"),
        ("The answer is rec.autos", "unknown label 'The answer is rec.autos'"),
        ("autos", "unknown label 'autos'"),
        ("", "empty output"),
        ("   \n\t ", "empty output"),
        ('""', "empty output"),
        ("Label:", "empty output"),
        ("\x00\ufffd💥\u202e", "unknown label " + repr("\x00\ufffd💥\u202e")),
        ("x" * 100, "unknown label '" + "x" * 40 + "...'"),
    ],
)
def test_label_invalid(text, reason):
    assert parse_label(text, TOPIC20) == ParsedAnswer(None, False, reason)


def test_label_needs_a_word_end():
    # A 20-class name is not its 7-class root; the root alone, in any case, is.
    assert parse_label("rec.autos", TOPIC7) == ParsedAnswer(None, False, "unknown label 'rec.autos'")
    assert parse_label("REC", TOPIC7) == ParsedAnswer("rec", True)
    assert parse_label("talk.", TOPIC7) == ParsedAnswer("talk", True)
    assert parse_label("talk, since it is politics", TOPIC7) == ParsedAnswer("talk", True)
    # The longest label wins when one label starts another.
    assert parse_label("talk.politics.misc\nmore", (*TOPIC7, *TOPIC20)) == ParsedAnswer("talk.politics.misc", True)


def test_label_non_string_input():
    assert parse_label(None, TOPIC20) == ParsedAnswer(None, False, "expected text, got NoneType")


# ---------------------------------------------------------------------------------------------------------------------
# Word-label lists


@pytest.mark.parametrize(
    "text",
    [
        '["Other", "time", "date"]',
        "['other', 'TIME', 'date',]",
        '["Other", "time", "date", ]',
        ' Slots: ["Other", "time", "date"]\nThat is all.',
        'Here you go: ["Other", " time ", "date"] done',
    ],
)
def test_word_labels_valid(text):
    assert parse_word_labels(text, SLOTS.labels, num_words=3) == ParsedAnswer([OTHER, "time", "date"], True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["Other", "time"]', ParsedAnswer([OTHER, "time"], False, "2 labels for 3 words")),
        (
            '["Other", "time", "date", "date"]',
            ParsedAnswer([OTHER, "time", "date", "date"], False, "4 labels for 3 words"),
        ),
        ('["Other", "tiem", "date"]', ParsedAnswer([OTHER, OTHER, "date"], False, "unknown label 'tiem'")),
        ('["B-time", "I-time"]', ParsedAnswer([OTHER, OTHER], False, "unknown label 'B-time'")),
        ("Other time date", ParsedAnswer([OTHER, "time", "date"], False, "not a list")),
        ("Other, time, date", ParsedAnswer([OTHER, "time", "date"], False, "not a list")),
        ('["Other", "time", "da', ParsedAnswer([OTHER, "time"], False, "unterminated list")),
        ("[Other, time, date]", ParsedAnswer([OTHER, "time", "date"], False, "malformed list")),
        # Python joins adjacent string literals: one unknown label.
        ('["Other" "time" "date"]', ParsedAnswer([OTHER], False, "unknown label 'Othertimedate'")),
        ("[1, 2, 3]", ParsedAnswer([OTHER, OTHER, OTHER], False, "unknown label '1'")),
        ('[["Other"], "time", "date"]', ParsedAnswer([OTHER, "time", "date"], False, "unknown label \"['Other']\"")),
        ("[]", ParsedAnswer([], False, "0 labels for 3 words")),
        ("", ParsedAnswer([], False, "empty output")),
        ("\ufffd\x00💥", ParsedAnswer([OTHER], False, "not a list")),
        (None, ParsedAnswer([], False, "expected text, got NoneType")),
    ],
)
def test_word_labels_invalid(text, expected):
    assert parse_word_labels(text, SLOTS.labels, num_words=3) == expected


def test_word_labels_count_unchecked_without_num_words():
    assert parse_word_labels('["time"]', SLOTS.labels) == ParsedAnswer(["time"], True)


# ---------------------------------------------------------------------------------------------------------------------
# JSON objects (consolidated prompts)

TASKS = [INTENT, SLOTS]


def _json(text: str) -> dict[str, ParsedAnswer]:
    return parse_json_answer(text, TASKS, num_words=3)


@pytest.mark.parametrize(
    "text",
    [
        '{"task1": "alarm_set", "task2": ["Other", "time", "time"]}',
        'Sure! {"task1": "alarm_set", "task2": ["Other", "time", "time"]} Hope this helps.',
        "{'task1': 'alarm_set', 'task2': ['Other', 'time', 'time'],}",
        '{"task1": "alarm_set", "task2": ["Other", "time", "time",],}',
        '{"Task1": "ALARM_SET", "TASK2": ["other", "time", "time"]}',
        '{"intent": "alarm_set", "slots": ["Other", "time", "time"]}',
        '{"task1": "alarm_set", "task2": "[\\"Other\\", \\"time\\", \\"time\\"]"}',
        '{"task2": ["Other", "time", "time"], "task1": "alarm_set", "extra": 1}',
        '{"task1": "alarm_set", "task2": ["Other", "time", "time"]}\n{"task1": "weather_query"}',
        'Output: {"task1": "alarm_set\\n", "task2": ["Other", "time", "time"]}',
    ],
)
def test_json_valid(text):
    assert _json(text) == {
        "intent": ParsedAnswer("alarm_set", True),
        "slots": ParsedAnswer([OTHER, "time", "time"], True),
    }


@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        (
            '{"task1": "alarm_set"}',
            ParsedAnswer("alarm_set", True),
            ParsedAnswer([], False, "missing field 'task2'"),
        ),
        (
            '{"task2": ["Other", "time", "time"]}',
            ParsedAnswer(None, False, "missing field 'task1'"),
            ParsedAnswer([OTHER, "time", "time"], True),
        ),
        (
            '{"task1": "alarm_set", "task2": ["Other", "time"',
            ParsedAnswer("alarm_set", False, "unterminated JSON object"),
            ParsedAnswer([OTHER, "time"], False, "unterminated list"),
        ),
        (
            '{"task1": "alarm_sett", "task2": ["Other", "time", "time", "date"]}',
            ParsedAnswer(None, False, "unknown label 'alarm_sett'"),
            ParsedAnswer([OTHER, "time", "time", "date"], False, "4 labels for 3 words"),
        ),
        (
            '{"task1": ["alarm_set"], "task2": "Other"}',
            ParsedAnswer(None, False, "expected a label string, got \"['alarm_set']\""),
            ParsedAnswer([OTHER], False, "not a list"),
        ),
        (
            '{"task1": null, "task2": 7}',
            ParsedAnswer(None, False, "expected a label string, got 'None'"),
            ParsedAnswer([], False, "expected a list of labels, got '7'"),
        ),
        (
            "{task1: alarm_set, task2: [Other, time, time]}",
            ParsedAnswer(None, False, "malformed JSON object"),
            ParsedAnswer([], False, "malformed JSON object"),
        ),
        (
            '{"task1": "alarm_set" "task2": ["Other", "time", "time"]}',
            ParsedAnswer("alarm_set", False, "malformed JSON object"),
            ParsedAnswer([OTHER, "time", "time"], False, "malformed JSON object"),
        ),
        (
            "alarm_set",
            ParsedAnswer(None, False, "no JSON object"),
            ParsedAnswer([], False, "no JSON object"),
        ),
        ("", ParsedAnswer(None, False, "no JSON object"), ParsedAnswer([], False, "no JSON object")),
        ("[1, 2]", ParsedAnswer(None, False, "no JSON object"), ParsedAnswer([], False, "no JSON object")),
        ("{}", ParsedAnswer(None, False, "missing field 'task1'"), ParsedAnswer([], False, "missing field 'task2'")),
        (
            '{"a": {"b": {"c": [[[[[[[[[["}',
            ParsedAnswer(None, False, "unterminated JSON object"),
            ParsedAnswer([], False, "unterminated JSON object"),
        ),
    ],
)
def test_json_invalid(text, intent, slots):
    assert _json(text) == {"intent": intent, "slots": slots}


def test_json_non_string_input():
    assert _json(None) == {
        "intent": ParsedAnswer(None, False, "expected text, got NoneType"),
        "slots": ParsedAnswer([], False, "expected text, got NoneType"),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Never raise

_ALPHABET = list("{}[]()\"'`\\,:;. \n\tabcOtherimeTask12_-") + ["task1", "task2", "\ufffd", "💥", "\x00", "é", "\u202e"]


@pytest.mark.parametrize("seed", range(5))
def test_parsers_never_raise_on_garbage(seed):
    rng = random.Random(seed)
    for _ in range(400):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 60)))
        results = [parse_label(text, TOPIC20), parse_word_labels(text, SLOTS.labels, 3), *_json(text).values()]
        results += [parse_label_list(text, GENRES.labels), *parse_serial_answer(text, [INTENT, SLOTS, GENRES]).values()]
        assert all(isinstance(result, ParsedAnswer) for result in results)
        assert all(result.valid == (result.reason == "") for result in results)


@pytest.mark.parametrize(
    "text",
    ["[" * 5000, "{" * 5000, "(" * 5000 + ")" * 5000, '{"task1": ' + "[" * 3000 + "]" * 3000 + "}", "x" * 200_000],
)
def test_parsers_never_raise_on_pathological_input(text):
    assert parse_label(text, TOPIC20).valid is False
    assert parse_word_labels(text, SLOTS.labels, 3).valid is False
    assert not any(result.valid for result in _json(text).values())
    assert parse_label_list(text, GENRES.labels).valid is False
