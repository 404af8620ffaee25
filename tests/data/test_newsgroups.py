"""20 Newsgroups reader: tiny bydate fixtures (tarball and folders), scikit-learn stripping, errors, real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_clf.data import newsgroups
from lit_clf.data.download import DataNotFoundError
from lit_clf.data.newsgroups import (
    NEWSGROUPS_TASKS,
    locate_newsgroups,
    read_newsgroups,
    strip_newsgroup_footer,
    strip_newsgroup_header,
    strip_newsgroup_quoting,
)
from lit_clf.data.tasks import collect_labels

POST = (
    "From: bob@x.edu (Bob)\n"
    "Subject: Re: orbit\n"
    "Organization: NASA\n"
    "\n"
    "In article <1993Apr1.1@x.edu> amy@y.edu writes:\n"
    "> Is the orbit stable?\n"
    "|> Older quote\n"
    "Yes, it is stable.\n"
    "Amy said: no.\n"
    "Really.\n"
    "\n"
    "-- \n"
    "Bob   bob@x.edu\n"
)
HEADERLESS = POST.split("\n\n", 1)[1]
FOOTERLESS = POST.split("\n-- \n")[0]  # up to the separator line, the blank line before it becoming the final "\n"
QUOTELESS = POST.replace(
    "In article <1993Apr1.1@x.edu> amy@y.edu writes:\n> Is the orbit stable?\n|> Older quote\n", ""
).replace("Amy said: no.\n", "")
ALL_STRIPPED = "Yes, it is stable.\nReally.\n"

# path inside the archive -> bytes; ids 9, 10, 102994 check the numeric (not lexicographic) order.
FILES = {
    "20news-bydate-train/alt.atheism/51060": b"From: a@b.c\nSubject: god\n\nNo.\n",
    "20news-bydate-train/rec.autos/10": b"From: c@d.e\n\nTen.\n",
    "20news-bydate-train/rec.autos/102994": b"From: lerxst@wam.umd.edu (where's my thing)\n\nWHAT car?\n",
    "20news-bydate-train/rec.autos/9": b"From: e@f.g\n\nNine.\n",
    "20news-bydate-train/rec.motorcycles/104960": b"From: h@i.j\n\nBikes.\n",
    "20news-bydate-train/sci.space/60150": POST.encode(),
    "20news-bydate-test/alt.atheism/53068": b"From: k@l.m\r\n\r\nCRLF kept\r\n",
    "20news-bydate-test/rec.autos/103007": b"From: n@o.p\n\nCaf\xe9 cr\xe8me\n",
}
TRAIN_IDS = [
    "train/alt.atheism/51060",
    "train/rec.autos/9",
    "train/rec.autos/10",
    "train/rec.autos/102994",
    "train/rec.motorcycles/104960",
    "train/sci.space/60150",
]


@pytest.fixture
def make_tarball(write_tar):
    """``make_tarball(path, files=FILES)``: a bydate-style tar.gz with directory entries, like the real archive."""

    def make(path: Path, files: dict[str, bytes] = FILES) -> Path:
        dirs = sorted({str(Path(name).parent) for name in files} | {str(Path(name).parents[1]) for name in files})
        return write_tar(path, files, dirs)

    return make


def make_folders(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def tarball(tmp_path, make_tarball) -> Path:
    return make_tarball(tmp_path / "root" / "20newsgroups" / "20news-bydate.tar.gz")


def test_tasks():
    assert NEWSGROUPS_TASKS == {"topic20": "sequence", "topic7": "sequence"}


def test_read_tarball_exact(tarball):
    splits = read_newsgroups(tarball)
    assert list(splits) == ["train", "test"]
    assert [ex.id for ex in splits["train"]] == TRAIN_IDS
    assert [ex.id for ex in splits["test"]] == ["test/alt.atheism/53068", "test/rec.autos/103007"]
    first = splits["train"][3]
    assert first.text == "From: lerxst@wam.umd.edu (where's my thing)\n\nWHAT car?\n"
    assert dict(first.labels) == {"topic20": "rec.autos", "topic7": "rec"}
    assert splits["train"][5].text == POST
    # Bytes decode as latin-1 and CRLFs are kept, as scikit-learn reads them.
    assert [ex.text for ex in splits["test"]] == ["From: k@l.m\r\n\r\nCRLF kept\r\n", "From: n@o.p\n\nCafé crème\n"]


def test_seven_class_mapping(tarball):
    train = read_newsgroups(tarball)["train"]
    assert [(ex.labels["topic20"], ex.labels["topic7"]) for ex in train] == [
        ("alt.atheism", "alt"),
        ("rec.autos", "rec"),
        ("rec.autos", "rec"),
        ("rec.autos", "rec"),
        ("rec.motorcycles", "rec"),
        ("sci.space", "sci"),
    ]
    assert collect_labels(train, "topic7", "sequence") == ("alt", "rec", "sci")


def test_folders_equal_tarball(tmp_path, tarball):
    folder = make_folders(tmp_path / "extracted")
    assert read_newsgroups(folder) == read_newsgroups(tarball)


def test_locate_prefers_folders(tmp_path, tarball):
    root = tmp_path / "root"
    assert locate_newsgroups(root, download=False) == tarball
    make_folders(root / "20newsgroups")
    assert locate_newsgroups(root, download=False) == root / "20newsgroups"


def test_locate_uses_env(tmp_path, tarball, monkeypatch):
    monkeypatch.setenv("LIT_CLF_DATA", str(tmp_path / "root"))
    assert locate_newsgroups(download=False) == tarball


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ((), POST),
        (("headers",), HEADERLESS),
        ("headers", HEADERLESS),
        (("footers",), FOOTERLESS),
        (("quotes",), QUOTELESS),
        (("quotes", "footers", "headers"), ALL_STRIPPED),
    ],
)
def test_remove(tarball, remove, expected):
    post = next(ex for ex in read_newsgroups(tarball, remove=remove)["train"] if ex.id == "train/sci.space/60150")
    assert post.text == expected


def test_strippers_edge_cases():
    assert strip_newsgroup_header("no blank line") == ""
    assert strip_newsgroup_footer("one\ntwo") == "one\ntwo"  # no separator: unchanged
    assert strip_newsgroup_footer("\n\n  body\n\n--\nsig\n\n") == "body\n"  # built from text.strip()
    assert strip_newsgroup_footer("--\nsig") == "--\nsig"  # separator on the first line: unchanged
    assert strip_newsgroup_quoting("a\n>b\nc wrote: x\n| d\n e") == "a\n e"


def test_strippers_match_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets._twenty_newsgroups")
    texts = [POST, HEADERLESS, "", "\n", "x\n\n", "--\nsig", "a\n\n---\n\n", " >not quote\n> quote\nsays: hi"]
    for text in texts:
        assert strip_newsgroup_header(text) == sk.strip_newsgroup_header(text)
        assert strip_newsgroup_footer(text) == sk.strip_newsgroup_footer(text)
        assert strip_newsgroup_quoting(text) == sk.strip_newsgroup_quoting(text)


def test_unknown_remove_value(tarball):
    with pytest.raises(
        ValueError, match=r"^remove: unknown value 'signatures'; allowed values: headers, footers, quotes$"
    ):
        read_newsgroups(tarball, remove=("headers", "signatures"))


def test_missing_data_names_places(tmp_path):
    root = tmp_path / "empty"
    with pytest.raises(DataNotFoundError) as info:
        locate_newsgroups(root, download=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("20 Newsgroups (bydate) not found (looked for: ")
    for place in ("20news-bydate-train", "20news-bydate-test", "20news-bydate.tar.gz"):
        assert str(root / "20newsgroups" / place) in message
    assert "download=False" in message and "--data.init_args.data_dir" in message and "LIT_CLF_DATA" in message
    with pytest.raises(DataNotFoundError, match="the path does not exist"):
        read_newsgroups(root / "nope.tar.gz")


def test_truncated_tarball(tarball):
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"20news-bydate\.tar\.gz is truncated or corrupt .*; delete it to download"):
        read_newsgroups(tarball)


def test_archive_without_split_folders(tmp_path, make_tarball):
    archive = make_tarball(tmp_path / "other.tar.gz", {"news/rec.autos/1": b"x"})
    with pytest.raises(ValueError, match=r"other\.tar\.gz: no 20news-bydate-train folder; expected the 20news-bydate"):
        read_newsgroups(archive)
    with pytest.raises(ValueError, match="no 20news-bydate-train folder"):
        read_newsgroups(make_folders(tmp_path / "folders", {"news/rec.autos/1": b"x"}))


def test_empty_split(tmp_path, write_tar):
    train_only = {name: data for name, data in FILES.items() if "train" in name}
    folder = make_folders(tmp_path / "folders", train_only)
    (folder / "20news-bydate-test" / "rec.autos").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"split 'test' is empty \(no 20news-bydate-test/<group>/<id> files\)"):
        read_newsgroups(folder)
    archive = write_tar(tmp_path / "a.tar.gz", train_only, dirs=["20news-bydate-test"])  # an empty test folder
    with pytest.raises(ValueError, match="split 'test' is empty"):
        read_newsgroups(archive)


@pytest.fixture
def upstream(tmp_path, serve_upstream, make_tarball) -> list[str]:
    """Point the module's URL at a local tarball; returns the URLs urlopen was called with."""
    return serve_upstream(
        newsgroups, "NEWSGROUPS_URL", "NEWSGROUPS_SHA256", make_tarball(tmp_path / "upstream" / "20news-bydate.tar.gz")
    )


def test_locate_downloads(tmp_path, upstream):
    root = tmp_path / "root"
    path = locate_newsgroups(root)
    assert path == root / "20newsgroups" / "20news-bydate.tar.gz"
    assert upstream == [newsgroups.NEWSGROUPS_URL] and upstream[0].startswith("file://")
    assert [ex.id for ex in read_newsgroups(path)["train"]] == TRAIN_IDS
    assert locate_newsgroups(root) == path and len(upstream) == 1  # found on disk: no second download


def test_locate_download_failures(tmp_path, upstream, monkeypatch):
    monkeypatch.setattr(newsgroups, "NEWSGROUPS_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        locate_newsgroups(tmp_path / "root")
    assert not (tmp_path / "root").exists()  # nothing left, not even the folders the download made
    missing = (tmp_path / "missing.tar.gz").as_uri()
    monkeypatch.setattr(newsgroups, "NEWSGROUPS_URL", missing)
    with pytest.raises(DataNotFoundError, match=rf"20news-bydate\.tar\.gz\); could not download {missing} \("):
        locate_newsgroups(tmp_path / "root")


# ---- real data (../shared/data) ----

TRAIN_COUNTS = {
    "alt.atheism": 480, "comp.graphics": 584, "comp.os.ms-windows.misc": 591, "comp.sys.ibm.pc.hardware": 590,
    "comp.sys.mac.hardware": 578, "comp.windows.x": 593, "misc.forsale": 585, "rec.autos": 594,
    "rec.motorcycles": 598, "rec.sport.baseball": 597, "rec.sport.hockey": 600, "sci.crypt": 595,
    "sci.electronics": 591, "sci.med": 594, "sci.space": 593, "soc.religion.christian": 599,
    "talk.politics.guns": 546, "talk.politics.mideast": 564, "talk.politics.misc": 465, "talk.religion.misc": 377,
}  # fmt: skip


@pytest.fixture(scope="module")
def real(shared_data) -> dict:
    return read_newsgroups(locate_newsgroups(shared_data, download=False))


def test_real_counts_and_labels(real, shared_data):
    assert locate_newsgroups(shared_data, download=False) == shared_data / "20newsgroups" / "20news-bydate.tar.gz"
    assert {split: len(examples) for split, examples in real.items()} == {"train": 11314, "test": 7532}
    every = real["train"] + real["test"]
    assert len({ex.id for ex in every}) == 18846
    assert collect_labels(every, "topic20", "sequence") == tuple(TRAIN_COUNTS)
    assert collect_labels(every, "topic7", "sequence") == ("alt", "comp", "misc", "rec", "sci", "soc", "talk")
    counts: dict[str, int] = {}
    for ex in real["train"]:
        counts[ex.labels["topic20"]] = counts.get(ex.labels["topic20"], 0) + 1
    assert counts == TRAIN_COUNTS


def test_real_texts(real):
    by_id = {ex.id: ex for ex in real["train"]}
    assert by_id["train/rec.autos/102994"].text.startswith("From: lerxst@wam.umd.edu (where's my thing)\n")
    assert "\r\n" in by_id["train/comp.graphics/38753"].text  # CRLFs kept byte for byte
    assert real["train"][0].id == "train/alt.atheism/49960"


def test_real_stripping_matches_scikit_learn(real):
    sk = pytest.importorskip("sklearn.datasets._twenty_newsgroups")
    for ex in real["train"] + real["test"]:
        assert strip_newsgroup_header(ex.text) == sk.strip_newsgroup_header(ex.text)
        assert strip_newsgroup_footer(ex.text) == sk.strip_newsgroup_footer(ex.text)
        assert strip_newsgroup_quoting(ex.text) == sk.strip_newsgroup_quoting(ex.text)
