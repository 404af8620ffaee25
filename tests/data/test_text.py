"""TextDataModule: the user's own files and datasets, every layout, and each bad input's one-line message."""

from __future__ import annotations

import json

import pytest

from lit_clf.data import TextDataModule
from lit_clf.data.tasks import TaskSpec

ROWS = [
    ("the battery died after a day", "negative", "hardware"),
    ("great screen and fast", "positive", "hardware"),
    ("support never answered", "negative", "service"),
    ("refund arrived quickly", "positive", "service"),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({"text": t, "label": s, "topic": c}) + "\n" for t, s, c in rows))
    return str(path)


def test_a_file_per_split_in_each_format(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", ROWS)
    (tmp_path / "dev.json").write_text(json.dumps([{"text": ROWS[0][0], "label": "negative", "topic": "hardware"}]))
    (tmp_path / "test.tsv").write_text("great service\tpositive\tservice\nslow laptop\tnegative\thardware\n")
    data = TextDataModule(
        label_columns={"sentiment": "label", "topic": "topic"},
        train=str(tmp_path / "train.jsonl"),
        val=str(tmp_path / "dev.json"),
        test=str(tmp_path / "test.tsv"),
        header=False,
        column_names=["text", "label", "topic"],
    )
    assert data.task_specs == [
        TaskSpec("sentiment", "sequence", ("negative", "positive")),
        TaskSpec("topic", "sequence", ("hardware", "service")),
    ]
    test = data.examples("test")
    assert [(e.id, e.text, dict(e.labels)) for e in test] == [
        ("test/0", "great service", {"sentiment": "positive", "topic": "service"}),
        ("test/1", "slow laptop", {"sentiment": "negative", "topic": "hardware"}),
    ]
    assert len(data.examples("train")) == 4 and len(data.examples("val")) == 1


def test_one_csv_with_a_split_column_and_a_seeded_validation_fraction(tmp_path):
    lines = ["review,label,part"] + [f'"{t}",{s},train' for t, s, _ in ROWS * 5] + ['"works fine",positive,test']
    (tmp_path / "all.csv").write_text("\n".join(lines) + "\n")
    data = TextDataModule(
        label_columns={"sentiment": "label"},
        path=str(tmp_path / "all.csv"),
        split_column="part",
        text_column="review",
        val_fraction=0.25,
    )
    assert [len(data.examples(s)) for s in ("train", "val", "test")] == [15, 5, 1]
    again = TextDataModule(
        label_columns={"sentiment": "label"},
        path=str(tmp_path / "all.csv"),
        split_column="part",
        text_column="review",
        val_fraction=0.25,
    )
    assert [e.id for e in again.examples("val")] == [e.id for e in data.examples("val")]


def test_a_token_task_from_csv_and_given_labels(tmp_path):
    (tmp_path / "train.csv").write_text(
        "words,tags\nJohn lives in Paris,B-person O O B-location\nMary Ann sings,B-person I-person O\n"
    )
    (tmp_path / "test.csv").write_text("words,tags\nParis is big,B-location O O\n")
    data = TextDataModule(
        label_columns={"ner": "tags"},
        task_kinds={"ner": "token"},
        words_column="words",
        train=str(tmp_path / "train.csv"),
        test=str(tmp_path / "test.csv"),
        val_fraction=0.5,
        labels={"ner": ["O", "B-location", "B-person", "I-person"]},
    )
    assert data.task_specs == [TaskSpec("ner", "token", ("O", "B-location", "B-person", "I-person"), "bio")]
    assert data.examples("test")[0].labels["ner"] == ("B-location", "O", "O")


def test_wnut17_conll_real_counts(shared_data):
    folder = shared_data / "wnut17"
    data = TextDataModule(
        train=str(folder / "wnut17train.conll"),
        val=str(folder / "emerging.dev.conll"),
        test=str(folder / "emerging.test.annotated"),
        format="conll",
    )
    counts = {
        split: (len(ex), sum(len(e.words) for e in ex), sum(t.startswith("B-") for e in ex for t in e.labels["ner"]))
        for split, ex in ((s, data.examples(s)) for s in ("train", "val", "test"))
    }
    assert counts == {"train": (3394, 62730, 1975), "val": (1009, 15733, 836), "test": (1287, 23394, 1079)}
    (spec,) = data.task_specs
    assert (spec.name, spec.kind, spec.scheme, spec.outside, spec.num_labels) == ("ner", "token", "bio", "O", 13)
    first = data.examples("train")[0]
    assert first.words[14:17] == ["Empire", "State", "Building"]
    assert first.labels["ner"][14:17] == ("B-location", "I-location", "I-location")


def test_a_datasets_folder_saved_to_disk_and_a_folder_of_data_files(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    part = {"text": [t for t, _, _ in ROWS], "label": [0, 1, 0, 1]}
    saved = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(part, features=features) for name in ("train", "validation", "test")}
    )
    saved.save_to_disk(str(tmp_path / "saved"))
    data = TextDataModule(label_columns={"sentiment": "label"}, hf_dataset=str(tmp_path / "saved"))
    assert data.task_specs == [TaskSpec("sentiment", "sequence", ("negative", "positive"))]
    assert data.examples("val")[1].labels == {"sentiment": "positive"}  # ClassLabel ids read as names
    files = tmp_path / "files"
    files.mkdir()
    write_jsonl(files / "train.jsonl", ROWS)
    write_jsonl(files / "test.jsonl", ROWS[:2])
    data = TextDataModule(label_columns={"topic": "topic"}, hf_dataset=str(files), val_fraction=0.25)
    assert [len(data.examples(s)) for s in ("train", "val", "test")] == [3, 1, 2]


# ------------------------------------------------------------------------------------------------- bad input
def bad(tmp_path, train_text: str, suffix=".jsonl", test_text: str | None = None, **kwargs) -> str:
    (tmp_path / f"train{suffix}").write_bytes(
        train_text.encode("latin-1") if "\xe9" in train_text else train_text.encode()
    )
    (tmp_path / f"test{suffix}").write_text(test_text if test_text is not None else train_text)
    args = {"label_columns": {"sentiment": "label"}, **kwargs}
    with pytest.raises(ValueError) as err:
        _ = TextDataModule(
            train=str(tmp_path / f"train{suffix}"), test=str(tmp_path / f"test{suffix}"), **args
        ).task_specs
    return str(err.value)


GOOD = '{"text": "fine", "label": "positive"}\n{"text": "bad", "label": "negative"}\n'


def test_a_missing_column_names_the_file_and_the_columns(tmp_path):
    message = bad(tmp_path, GOOD, label_columns={"sentiment": "rating"})
    assert message == f"{tmp_path / 'train.jsonl'}:1: no column 'rating' (columns: text, label)"


def test_an_empty_text_or_label_names_the_line(tmp_path):
    text = GOOD + '{"text": "  ", "label": "positive"}\n'
    assert bad(tmp_path, text) == f"{tmp_path / 'train.jsonl'}:3: empty text"
    text = GOOD + '{"text": "ok", "label": ""}\n'
    assert bad(tmp_path, text) == f"{tmp_path / 'train.jsonl'}:3: empty sentiment label (column 'label')"


def test_words_and_labels_of_different_lengths(tmp_path):
    text = "words,tags\na b c,O O\n"
    message = bad(
        tmp_path, text, ".csv", label_columns={"ner": "tags"}, task_kinds={"ner": "token"}, words_column="words"
    )
    assert message == f"{tmp_path / 'train.csv'}:2: 3 words but 2 ner labels"


def test_an_empty_split_and_a_label_only_test_has(tmp_path):
    assert bad(tmp_path, GOOD, test_text="\n") == f"{tmp_path / 'test.jsonl'}: the test split has no examples"
    test = '{"text": "meh", "label": "neutral"}\n'
    assert bad(tmp_path, GOOD * 3, test_text=test) == (
        f"{tmp_path / 'test.jsonl'}:1: sentiment label 'neutral' is not among the training split's labels (2); set "
        "data.init_args.labels_from all, or list the labels in data.init_args.labels"
    )


def test_a_file_that_is_not_utf8(tmp_path):
    assert bad(tmp_path, GOOD + '{"text": "caf\xe9", "label": "positive"}\n') == (
        f"{tmp_path / 'train.jsonl'}:3: not UTF-8 (byte 0xe9); convert the file to UTF-8 (e.g. iconv -f latin1 -t "
        "utf-8)"
    )


def test_an_unknown_dataset_name(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"^hf_dataset: no-such/dataset-xyz: cannot load it \("):
        _ = TextDataModule(label_columns={"a": "b"}, hf_dataset="no-such/dataset-xyz").task_specs


def test_options_that_cannot_work_are_refused_at_once(tmp_path):
    with pytest.raises(ValueError, match="give one source"):
        TextDataModule(label_columns={"a": "b"}, train="x.jsonl", test="y.jsonl", hf_dataset="z")
    with pytest.raises(ValueError, match="label_columns: give each task's label column"):
        TextDataModule(train="x.jsonl", test="y.jsonl")
    with pytest.raises(ValueError, match="task_kinds: 'b' is not a task of label_columns"):
        TextDataModule(label_columns={"a": "a"}, task_kinds={"b": "token"}, train="x.jsonl", test="y.jsonl")


def test_wnut17_files_are_downloaded_and_checked_when_missing(tmp_path, shared_data, monkeypatch):
    from lit_clf.data import Wnut17DataModule, wnut17

    monkeypatch.setattr(wnut17, "WNUT17_BASE_URL", (shared_data / "wnut17").as_uri() + "/")  # an offline upstream
    data = Wnut17DataModule(data_dir=str(tmp_path))
    assert [len(data.examples(s)) for s in ("train", "val", "test")] == [3394, 1009, 1287]
    assert sorted(p.name for p in (tmp_path / "wnut17").iterdir()) == sorted(n for n, _ in wnut17.WNUT17_FILES.values())
    monkeypatch.setitem(wnut17.WNUT17_FILES, "val", ("emerging.dev.conll", "0" * 64))
    (tmp_path / "wnut17" / "emerging.dev.conll").unlink()
    with pytest.raises(ValueError, match="sha256 mismatch"):
        _ = Wnut17DataModule(data_dir=str(tmp_path)).task_specs


def fit_encoder_on_files(backbone, *options: str) -> None:
    """``lit-clf fit`` of a tiny encoder for one epoch on ``train.jsonl`` / ``test.jsonl`` in the working folder."""
    from tests.helpers import REPO, run_cli

    run_cli(
        [
            "fit",
            f"--config={REPO / 'configs' / 'massive' / 'minilm-intent.yaml'}",
            f"--model.init_args.backbone={backbone}",
            "--model.init_args.pretrained=false",
            "--data=lit_clf.data.TextDataModule",
            "--data.init_args.train=train.jsonl",
            "--data.init_args.test=test.jsonl",
            "--data.init_args.batch_size=4",
            "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false",
            *options,
        ]
    )


def test_an_encoder_fits_and_tests_on_own_jsonl_files(tmp_path, tiny_roberta_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", ROWS * 3)
    write_jsonl(tmp_path / "test.jsonl", ROWS)
    fit_encoder_on_files(
        tiny_roberta_dir,
        "--data.init_args.label_columns={sentiment: label, topic: topic}",
        "--data.init_args.tasks=[sentiment, topic]",  # the base config's tasks are MASSIVE's
        "--data.init_args.name=reviews",
    )
    (metrics,) = tmp_path.rglob("metrics.csv")
    assert metrics.parents[1].name == f"reviews-{tiny_roberta_dir.name}-sentiment+topic-ft"
    header = metrics.read_text().splitlines()[0]
    assert "test/sentiment_acc" in header and "test/topic_acc" in header


def test_multilabel_tasks_from_lists_and_separated_text(tmp_path):
    rows = [
        {"text": "a heist at sea", "genres": ["crime", "adventure"]},
        {"text": "two people fall in love", "genres": ["romance"]},
        {"text": "nothing happens", "genres": []},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.csv").write_text('text,genres\n"love at sea",romance| adventure\n')
    data = TextDataModule(
        label_columns={"genres": "genres"},
        task_kinds={"genres": "multilabel"},
        train=str(tmp_path / "train.jsonl"),
        test=str(tmp_path / "test.csv"),
        val_fraction=0.3,
    )
    assert data.task_specs == [TaskSpec("genres", "multilabel", ("adventure", "crime", "romance"))]
    assert data.examples("test")[0].labels == {"genres": ("adventure", "romance")}
    every = data.examples("train") + data.examples("val")
    assert sorted(e.labels["genres"] for e in every) == [(), ("adventure", "crime"), ("romance",)]


def test_an_encoder_fits_a_multilabel_task_from_files(tmp_path, tiny_roberta_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [("a heist at sea", ["crime", "adventure"]), ("love story", ["romance"]), ("a quiet film", [])] * 4
    for name in ("train", "test"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t, "g": g}) + "\n" for t, g in rows))
    fit_encoder_on_files(
        tiny_roberta_dir,
        "--data.init_args.label_columns={genres: g}",
        "--data.init_args.task_kinds={genres: multilabel}",
        "--data.init_args.tasks=[genres]",
    )
    (metrics,) = tmp_path.rglob("metrics.csv")
    header = metrics.read_text().splitlines()[0].split(",")
    assert {"val/genres_f1", "test/genres_f1", "test/genres_macro_f1", "test/genres_exact_match"} <= set(header)
    assert list(tmp_path.rglob("best.ckpt"))  # kept by val/genres_f1


# ------------------------------------------------------------------------------ files read as their format says
def test_tsv_has_no_quoting_so_a_quoted_text_never_merges_rows(tmp_path):
    # 12 rows, the texts of 11 starting with a quote (a quoted statement): TSV reads every line as one row.
    lines = ["text\tlabel"] + [f'"quoted {i}" said someone\tpositive' for i in range(11)] + ["plain\tnegative"]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.tsv").write_text("\n".join(lines) + "\n")
    data = TextDataModule(
        label_columns={"sentiment": "label"}, train=str(tmp_path / "train.tsv"), test=str(tmp_path / "test.tsv")
    )
    texts = [e.text for e in data.examples("test")]
    assert len(texts) == 12 and texts[0] == '"quoted 0" said someone'
    # csv keeps RFC 4180: a quoted field holds the separator; `quoting` overrides either
    (tmp_path / "train.csv").write_text('text,label\n"one, two",positive\nthree,negative\n')
    (tmp_path / "test.csv").write_text('text,label\n"one, two",positive\nthree,negative\n')
    csv_data = TextDataModule(
        label_columns={"sentiment": "label"}, train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv")
    )
    assert [e.text for e in csv_data.examples("test")] == ["one, two", "three"]
    quoted_tsv = TextDataModule(
        label_columns={"sentiment": "label"},
        train=str(tmp_path / "train.tsv"),
        test=str(tmp_path / "test.tsv"),
        quoting="rfc4180",
    )
    assert quoted_tsv.examples("test")[0].text == "quoted 0 said someone"


def test_a_header_naming_a_column_twice_names_both(tmp_path):
    message = bad(tmp_path, "text,label,label\nfine,positive,negative\n", suffix=".csv")
    assert message == (
        f"{tmp_path / 'train.csv'}:1: column 'label' appears twice (columns 2 and 3); rename one "
        "(or give data.init_args.column_names)"
    )


def test_a_label_list_for_a_one_label_task_names_task_kinds(tmp_path):
    text = '{"text": "fine", "label": ["positive", "good"]}\n' + GOOD
    assert bad(tmp_path, text) == (
        f"{tmp_path / 'train.jsonl'}:1: sentiment labels are a list (['positive', 'good']) but sentiment is a "
        "sequence task (one label); a task with several labels per example: data.init_args.task_kinds: "
        "{sentiment: multilabel}"
    )


def test_a_folder_given_as_a_data_file(tmp_path):
    (tmp_path / "train.jsonl").mkdir()
    (tmp_path / "test.jsonl").write_text(GOOD)
    files = {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")}
    with pytest.raises(ValueError, match=r"train\.jsonl: a folder, not a data file; give the file's path"):
        _ = TextDataModule(label_columns={"s": "label"}, **files).task_specs
