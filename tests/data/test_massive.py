"""MASSIVE reader: slot word labels from annot_utt, tiny jsonl fixtures, layouts, download, errors, real en-US."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_clf.data import massive
from lit_clf.data.download import DataNotFoundError
from lit_clf.data.massive import MASSIVE_LOCALES, MASSIVE_TASKS, locate_massive, parse_slot_labels, read_massive
from lit_clf.data.tasks import OTHER, Example, collect_labels

OUT = OTHER  # short, so expected label tuples stay readable


def row(id_: str, partition: str, intent: str, utt: str, annot_utt: str) -> dict:
    """A row with every field en-US rows have, in the release's order."""
    scenario = intent.split("_")[0]
    return {
        "id": id_, "locale": "en-US", "partition": partition, "scenario": scenario, "intent": intent,
        "utt": utt, "annot_utt": annot_utt, "worker_id": "1",
    }  # fmt: skip


ROWS = [
    row(
        "0", "test", "alarm_set", "wake me up at five am this week", "wake me up at [time : five am] [date : this week]"
    ),
    row("1", "train", "play_radio", "play b. b. c.'s radio", "play [radio_name : b. b. c.'s] radio"),
    row("2", "train", "calendar_query", "john's meetings today", "[person : john]'s meetings [date : today]"),
    row("3", "dev", "iot_hue_lightoff", "lights off", "lights off"),
    row("4", "train", "alarm_set", "set it for five : thirty", "set it for [time : five : thirty]"),
]
EXPECTED = {
    "train": [
        Example(
            "1",
            "play b. b. c.'s radio",
            {"intent": "play_radio", "slots": (OUT, "radio_name", "radio_name", "radio_name", OUT)},
        ),
        Example("2", "john's meetings today", {"intent": "calendar_query", "slots": ("person", OUT, "date")}),
        Example(
            "4", "set it for five : thirty", {"intent": "alarm_set", "slots": (OUT, OUT, OUT, "time", "time", "time")}
        ),
    ],
    "dev": [Example("3", "lights off", {"intent": "iot_hue_lightoff", "slots": (OUT, OUT)})],
    "test": [
        Example(
            "0",
            "wake me up at five am this week",
            {"intent": "alarm_set", "slots": (OUT, OUT, OUT, OUT, "time", "time", "date", "date")},
        ),
    ],
}


def jsonl(rows: list[dict]) -> bytes:
    # Like the release: no newline after the last row.
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()


def write_jsonl(path: Path, rows: list[dict] = ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl(rows))
    return path


@pytest.fixture
def make_release(write_tar):
    """``make_release(path, top="1.1", locales=("en-US",))``: a tarball laid out like the 1.1 release,
    ``<top>/data/<locale>.jsonl`` plus a LICENSE."""

    def make(path: Path, top: str = "1.1", locales: tuple[str, ...] = ("en-US",)) -> Path:
        files = {f"{top}/data/{locale}.jsonl": jsonl(ROWS) for locale in locales}
        return write_tar(path, files | {f"{top}/LICENSE": b"CC BY 4.0\n"})

    return make


@pytest.mark.parametrize(
    ("annot_utt", "utt", "expected"),
    [
        (
            "wake me up at [time : five am] [date : this week]",  # adjacent slots, slot at the end
            "wake me up at five am this week",
            (OUT, OUT, OUT, OUT, "time", "time", "date", "date"),
        ),
        ("[person : john] called", "john called", ("person", OUT)),  # slot at the start
        ("[device_type : lights] [house_place : kitchen]", "lights kitchen", ("device_type", "house_place")),
        (
            "tell me [media_type : b. b. c.] news",
            "tell me b. b. c. news",
            (OUT, OUT, "media_type", "media_type", "media_type", OUT),
        ),
        (
            "what is the [media_type : b. b. c.'s] news",
            "what is the b. b. c.'s news",
            (OUT, OUT, OUT, *["media_type"] * 3, OUT),
        ),
        ("is there a [order_type : take-out] menu", "is there a take-out menu", (OUT, OUT, OUT, "order_type", OUT)),
        ("set it for [time : five : thirty]", "set it for five : thirty", (OUT, OUT, OUT, "time", "time", "time")),
        ("at [time :  five   am ]  ok", "at five am ok", (OUT, "time", "time", OUT)),  # extra spaces are not words
        ("[person : john]'s list", "john's list", ("person", OUT)),  # a word glued to a bracket takes the slot's type
        (
            "[date : 今天][weather : 天气]怎么样",
            "今天天气怎么样",
            ("date",),
        ),  # unspaced script: one word, first slot wins
        ("no slots here", "no slots here", (OUT, OUT, OUT)),
    ],
)
def test_parse_slot_labels(annot_utt, utt, expected):
    assert parse_slot_labels(annot_utt, utt) == expected


@pytest.mark.parametrize(
    ("annot_utt", "utt", "error"),
    [
        ("wake me at [time : five]", "wake me at six", r"without brackets is 'wake me at five', whose words differ"),
        ("wake me [time : five", "wake me five", r"unbalanced or malformed brackets at '\[time : five'"),
        ("wake me time : five]", "wake me five", r"unbalanced or malformed brackets at '\]'"),
        ("wake me [five]", "wake me five", r"unbalanced or malformed brackets at '\[five\]'"),
        ("wake me [ : five]", "wake me five", r"malformed slot '\[ : five\]' \(expected '\[type : value\]'\)"),
        ("wake me [time : ]", "wake me", r"malformed slot"),
        ("wake [a : [b : c]]", "wake c", r"unbalanced or malformed brackets"),
    ],
)
def test_parse_slot_labels_errors(annot_utt, utt, error):
    with pytest.raises(ValueError, match=error):
        parse_slot_labels(annot_utt, utt)


def test_read_massive_exact(tmp_path):
    splits = read_massive(write_jsonl(tmp_path / "en-US.jsonl"))
    assert list(splits) == ["train", "dev", "test"]
    assert splits == EXPECTED
    assert MASSIVE_TASKS == {"intent": "sequence", "slots": "token"}


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"id": "9", "partition": "train"', r"malformed JSON \(Expecting"),
        ("[1, 2]", r"expected a JSON object, got list"),
        (json.dumps({k: v for k, v in ROWS[1].items() if k != "annot_utt"}), r"missing field 'annot_utt'"),
        (json.dumps(ROWS[1] | {"utt": None}), r"field 'utt' must be a string, got None"),
        (json.dumps(ROWS[1] | {"partition": "validation"}), r"partition 'validation' is not one of train, dev, test"),
        (
            json.dumps(ROWS[1] | {"utt": "play b. b. c. radio"}),
            r"annot_utt .* without brackets is .*, whose words differ from utt 'play b\. b\. c\. radio'",
        ),
    ],
)
def test_read_massive_bad_row(tmp_path, line, error):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(ROWS[:2]) + b"\n" + line.encode() + b"\n" + jsonl(ROWS[2:]))
    with pytest.raises(ValueError, match=rf"^{path}:3: {error}") as info:
        read_massive(path)
    assert "\n" not in str(info.value)


def test_read_massive_blank_lines_and_empty_partition(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\n" + jsonl(ROWS) + b"\n\n")
    assert read_massive(path) == EXPECTED
    no_dev = write_jsonl(tmp_path / "no-dev.jsonl", [r for r in ROWS if r["partition"] != "dev"])
    with pytest.raises(ValueError, match=r"no-dev\.jsonl: partition 'dev' has no rows \(expected train, dev and test"):
        read_massive(no_dev)
    with pytest.raises(DataNotFoundError, match="the file does not exist"):
        read_massive(tmp_path / "missing.jsonl")


def test_locales():
    assert len(MASSIVE_LOCALES) == len(set(MASSIVE_LOCALES)) == 52  # 51 in 1.0, plus ca-ES
    assert list(MASSIVE_LOCALES) == sorted(MASSIVE_LOCALES)
    assert {"en-US", "ca-ES", "zh-TW", "sl-SL"} <= set(MASSIVE_LOCALES)


def test_unknown_locale(tmp_path):
    with pytest.raises(ValueError, match=r"^locale: unknown MASSIVE locale 'en_US' \(did you mean 'en-US'\?\); valid "):
        locate_massive("en_US", tmp_path)
    with pytest.raises(ValueError, match=r"'xx'; valid ones are listed in lit_clf\.data\.massive\.MASSIVE_LOCALES"):
        locate_massive("xx", tmp_path)


@pytest.mark.parametrize("layout", ["", "1.1/data", "amazon-massive-dataset-1.1/data", "data"])
def test_locate_layouts(tmp_path, layout):
    path = write_jsonl(tmp_path / "massive" / layout / "de-DE.jsonl")
    assert locate_massive("de-DE", tmp_path, download=False) == path


def test_locate_missing_names_places(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        locate_massive("de-DE", tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("MASSIVE de-DE not found (looked for: ")
    folder = tmp_path / "massive"
    for layout in ("", "1.1/data", "amazon-massive-dataset-1.1/data", "data"):
        assert str(folder / layout / "de-DE.jsonl") in message
    assert str(folder / "amazon-massive-dataset-1.1.tar.gz") in message
    assert "download=False" in message and "--data.init_args.data_dir" in message and "LIT_CLF_DATA" in message


@pytest.fixture
def upstream(tmp_path, serve_upstream, make_release) -> list[str]:
    """Point the module's URL at a local release tarball; returns the URLs urlopen was called with."""
    return serve_upstream(
        massive,
        "MASSIVE_URL",
        "MASSIVE_SHA256",
        make_release(tmp_path / "upstream" / "amazon-massive-dataset-1.1.tar.gz"),
    )


def test_locate_downloads_and_extracts(tmp_path, upstream):
    root = tmp_path / "root"
    path = locate_massive("en-US", root)
    assert path == root / "massive" / "1.1" / "data" / "en-US.jsonl"
    assert upstream == [massive.MASSIVE_URL] and upstream[0].startswith("file://")
    assert read_massive(path) == EXPECTED
    assert (root / "massive" / "amazon-massive-dataset-1.1.tar.gz").is_file()
    assert locate_massive("en-US", root) == path and len(upstream) == 1
    with pytest.raises(ValueError, match=r"amazon-massive-dataset-1\.1\.tar\.gz: has no data/de-DE\.jsonl"):
        locate_massive("de-DE", root)  # tarball on disk is reused, not downloaded again
    assert len(upstream) == 1


def test_locate_extracts_local_tarball_offline(tmp_path, make_release):
    make_release(tmp_path / "massive" / "amazon-massive-dataset-1.1.tar.gz", top="amazon-massive-dataset-1.1")
    path = locate_massive("en-US", tmp_path, download=False)
    assert path == tmp_path / "massive" / "amazon-massive-dataset-1.1" / "data" / "en-US.jsonl"


def test_locate_download_failures(tmp_path, upstream, monkeypatch):
    monkeypatch.setattr(massive, "MASSIVE_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        locate_massive("en-US", tmp_path / "root")
    assert not (tmp_path / "root").exists()  # nothing left, not even the folders the download made
    missing = (tmp_path / "missing.tar.gz").as_uri()
    monkeypatch.setattr(massive, "MASSIVE_URL", missing)
    with pytest.raises(DataNotFoundError, match=rf"\.tar\.gz\); could not download {missing} \("):
        locate_massive("en-US", tmp_path / "root")


# ---- real data (../shared/data) ----


@pytest.fixture(scope="module")
def real(shared_data) -> dict[str, list[Example]]:
    return read_massive(locate_massive("en-US", shared_data, download=False))


def test_real_counts_and_labels(real, shared_data):
    assert locate_massive(data_dir=shared_data, download=False) == shared_data / "massive" / "en-US.jsonl"
    assert {split: len(examples) for split, examples in real.items()} == {"train": 11514, "dev": 2033, "test": 2974}
    every = [ex for examples in real.values() for ex in examples]
    intents = collect_labels(every, "intent", "sequence")
    assert len(intents) == 60 and collect_labels(real["train"], "intent", "sequence") == intents
    assert set(intents) - set(collect_labels(real["dev"], "intent", "sequence")) == {"audio_volume_other"}
    assert set(intents) - set(collect_labels(real["test"], "intent", "sequence")) == {"cooking_query"}
    slots = collect_labels(every, "slots", "token")
    assert slots[0] == OTHER and len(slots) == 56
    assert set(slots) - set(collect_labels(real["dev"], "slots", "token")) == {"music_album", "transport_descriptor"}
    assert set(slots) - set(collect_labels(real["test"], "slots", "token")) == {"sport_type", "game_type"}


def test_real_word_labels(real):
    for ex in (ex for examples in real.values() for ex in examples):
        assert len(ex.labels["slots"]) == len(ex.text.split()), ex.id
    first = real["test"][0]
    assert first.id == "0" and first.labels["slots"] == (OUT, OUT, OUT, OUT, "time", "time", "date", "date")
    by_id = {ex.id: ex for ex in real["train"]}
    assert by_id["1"].labels == {"intent": "alarm_set", "slots": (OUT, OUT, OUT, OUT, "time", "time", OUT, "date")}
