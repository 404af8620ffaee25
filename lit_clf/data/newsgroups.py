"""20 Newsgroups ("bydate" split): locate or download the archive and read it into ``Example``s.

Two tasks share each post: ``topic20`` (the newsgroup, e.g. ``rec.autos``) and ``topic7`` (its root,
e.g. ``rec``). Files are decoded as latin-1, as scikit-learn does; by default the text is kept
exactly as distributed (headers included), and ``remove`` strips headers, footers or quotes with
scikit-learn's ``fetch_20newsgroups`` heuristics.

Layout inside the data root, either of::

    20newsgroups/20news-bydate.tar.gz                       (read in place, no extraction)
    20newsgroups/20news-bydate-{train,test}/<group>/<id>    (extracted; preferred when present)
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from lit_clf.data.base import ClassificationDataModule, split_off
from lit_clf.data.download import (
    ARCHIVE_ERRORS,
    DataNotFoundError,
    corrupt_archive,
    data_root,
    fetch,
    refuse_wrong_kind,
)
from lit_clf.data.tasks import Example, TaskKind

#: Official upstream of the bydate archive (Jason Rennie's page).
NEWSGROUPS_URL = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
#: sha256 of the upstream archive; checked on download only (local copies may be rebuilt archives).
NEWSGROUPS_SHA256 = "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610"

NEWSGROUPS_TASKS: dict[str, TaskKind] = {"topic20": "sequence", "topic7": "sequence"}
NEWSGROUPS_SPLITS = ("train", "test")
#: Values ``remove`` accepts, applied in this order whatever order they are given in (as scikit-learn does).
REMOVE_OPTIONS = ("headers", "footers", "quotes")

_FOLDER = "20newsgroups"
_ARCHIVE = "20news-bydate.tar.gz"
_SPLIT_DIRS = {f"20news-bydate-{split}": split for split in NEWSGROUPS_SPLITS}
_WHAT = "20 Newsgroups (bydate)"

# (category, file name) -> raw bytes, per split.
_RawSplits = dict[str, dict[tuple[str, str], bytes]]


def locate_newsgroups(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Find the bydate data under the data root, downloading the upstream archive if it is missing.

    Args:
        data_dir: Data root (see ``lit_clf.data.download.data_root``).
        download: Download ``NEWSGROUPS_URL`` into ``<root>/20newsgroups/`` when nothing is found.

    Returns:
        The folder holding ``20news-bydate-train`` and ``-test`` if both exist, else the tarball.

    Raises:
        DataNotFoundError: Nothing on disk and downloading is off or failed.
    """
    folder = data_root(data_dir) / _FOLDER
    split_dirs = [folder / name for name in _SPLIT_DIRS]
    refuse_wrong_kind(files=[folder / _ARCHIVE], folders=[folder, *split_dirs])
    if all(path.is_dir() for path in split_dirs):
        return folder
    archive = folder / _ARCHIVE
    if archive.is_file():
        return archive
    places = [*split_dirs, archive]
    return fetch(NEWSGROUPS_URL, archive, NEWSGROUPS_SHA256, what=_WHAT, places=places, download=download)


def read_newsgroups(source: Path, remove: Sequence[str] = ()) -> dict[str, list[Example]]:
    """Read both splits from the bydate tarball or from the folder holding the extracted splits.

    Args:
        source: What ``locate_newsgroups`` returns: the tarball, or the folder with ``20news-bydate-*``.
        remove: Parts to strip from every post, any of ``headers``, ``footers``, ``quotes``
            (scikit-learn's semantics); empty keeps the text as distributed.

    Returns:
        ``{"train": [...], "test": [...]}``; each list sorted by category, then numerically by id.
        Ids look like ``train/rec.autos/102994``; labels ``{"topic20": "rec.autos", "topic7": "rec"}``.

    Raises:
        ValueError: Unknown ``remove`` value, corrupt archive, missing or empty split.
        DataNotFoundError: ``source`` does not exist.
    """
    strip = _stripper(remove)
    source = Path(source)
    if source.is_file():
        raw, seen = _read_archive(source)
    elif source.is_dir():
        raw, seen = _read_folders(source)
    else:
        raise DataNotFoundError.looked_for(_WHAT, [source], "the path does not exist")
    _check_splits(source, raw, seen)
    return {split: _examples(split, raw[split], strip) for split in NEWSGROUPS_SPLITS}


def strip_newsgroup_header(text: str) -> str:
    """Drop everything before the first blank line (scikit-learn's ``strip_newsgroup_header``)."""
    _before, _blank, after = text.partition("\n\n")
    return after


_QUOTE_RE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def strip_newsgroup_quoting(text: str) -> str:
    """Drop quoted lines and lines introducing a quote (scikit-learn's ``strip_newsgroup_quoting``)."""
    return "\n".join(line for line in text.split("\n") if not _QUOTE_RE.search(line))


def strip_newsgroup_footer(text: str) -> str:
    """Drop the signature: everything after the last blank or all-hyphen line (scikit-learn's heuristic).

    As in scikit-learn, the result is built from ``text.strip()``, and ``text`` comes back unchanged
    when the only such line is the first one (or there is none).
    """
    lines = text.strip().split("\n")
    line_num = 0
    for line_num in range(len(lines) - 1, -1, -1):
        if lines[line_num].strip().strip("-") == "":
            break
    return "\n".join(lines[:line_num]) if line_num > 0 else text


_STRIPPERS: dict[str, Callable[[str], str]] = {
    "headers": strip_newsgroup_header,
    "footers": strip_newsgroup_footer,
    "quotes": strip_newsgroup_quoting,
}


def _stripper(remove: Sequence[str]) -> Callable[[str], str]:
    """Validate ``remove`` and compose its strippers in scikit-learn's order."""
    if isinstance(remove, str):  # a lone "headers" would otherwise be read letter by letter
        remove = (remove,)
    unknown = [value for value in remove if value not in REMOVE_OPTIONS]
    if unknown:
        raise ValueError(f"remove: unknown value {unknown[0]!r}; allowed values: {', '.join(REMOVE_OPTIONS)}")
    steps = [_STRIPPERS[name] for name in REMOVE_OPTIONS if name in remove]

    def strip(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return strip


def _doc_key(path: str) -> tuple[str, str, str] | None:
    """``(split, category, file name)`` for ``.../20news-bydate-<split>/<category>/<file>``, else None."""
    parts = PurePosixPath(path).parts
    # Dot files (e.g. macOS "._x" resource forks added by some tar tools) are not posts.
    if len(parts) < 3 or parts[-3] not in _SPLIT_DIRS or parts[-1].startswith("."):
        return None
    return _SPLIT_DIRS[parts[-3]], parts[-2], parts[-1]


def _read_archive(path: Path) -> tuple[_RawSplits, set[str]]:
    """Read every post straight from the tarball (streaming: one pass, no extraction). A gzip archive is read to its
    end in the same pass, so its CRC is checked: a damaged block ends the tar stream early without an error, which
    would otherwise read as a missing split rather than a corrupt archive."""
    raw: _RawSplits = {split: {} for split in NEWSGROUPS_SPLITS}
    seen: set[str] = set()
    try:
        with path.open("rb") as file:
            gzipped = file.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else path.open("rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    seen.update(_SPLIT_DIRS[p] for p in PurePosixPath(member.name).parts if p in _SPLIT_DIRS)
                    key = _doc_key(member.name) if member.isfile() else None
                    if key is not None:
                        split, category, name = key
                        raw[split][category, name] = tar.extractfile(member).read()
            while stream.read(1 << 20):  # the rest of the gzip stream, to its CRC
                pass
    except ARCHIVE_ERRORS as err:
        raise corrupt_archive(path, err) from err
    return raw, seen


def _read_folders(folder: Path) -> tuple[_RawSplits, set[str]]:
    """Read every post from ``folder/20news-bydate-<split>/<category>/<file>``."""
    raw: _RawSplits = {split: {} for split in NEWSGROUPS_SPLITS}
    seen: set[str] = set()
    for dir_name, split in _SPLIT_DIRS.items():
        split_dir = folder / dir_name
        if not split_dir.is_dir():
            continue
        seen.add(split)
        for category in split_dir.iterdir():
            if not category.is_dir():
                continue
            for post in category.iterdir():
                if post.is_file() and not post.name.startswith("."):
                    raw[split][category.name, post.name] = post.read_bytes()
    return raw, seen


def _check_splits(source: Path, raw: _RawSplits, seen: set[str]) -> None:
    for dir_name, split in _SPLIT_DIRS.items():
        if split not in seen:
            expected = " and ".join(f"{name}/<group>/<id>" for name in _SPLIT_DIRS)
            raise ValueError(f"{source}: no {dir_name} folder; expected the 20news-bydate layout ({expected})")
        if not raw[split]:
            raise ValueError(f"{source}: split {split!r} is empty (no {dir_name}/<group>/<id> files)")


def _id_order(name: str) -> tuple[int, int, str]:
    # Ids are article numbers: sort 9 before 10; anything non-numeric goes last, by name.
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _examples(split: str, docs: dict[tuple[str, str], bytes], strip: Callable[[str], str]) -> list[Example]:
    keys = sorted(docs, key=lambda key: (key[0], _id_order(key[1])))
    return [
        Example(
            id=f"{split}/{category}/{name}",
            text=strip(docs[category, name].decode("latin-1")),
            labels={"topic20": category, "topic7": category.split(".", 1)[0]},
        )
        for category, name in keys
    ]


class NewsgroupsDataModule(ClassificationDataModule):
    """20 Newsgroups (bydate): ``topic20`` (the 20 groups) and ``topic7`` (their root labels).

    Official train/test split; validation is a seeded ``val_fraction`` of the training split.
    """

    available_tasks: ClassVar[dict[str, TaskKind]] = NEWSGROUPS_TASKS
    dataset_name: ClassVar[str] = "newsgroups"
    known_sizes: ClassVar[dict[str, int]] = {"train+val": 11_314, "test": 7_532}
    known_labels: ClassVar[dict[str, dict[str, int]]] = {
        "train+val": {"topic20": 20, "topic7": 7},
        "test": {"topic20": 20, "topic7": 7},
    }

    def __init__(
        self,
        tasks: list[str] = ["topic20"],  # noqa: B006 (jsonargparse shows list defaults; never mutated)
        remove: list[str] = [],  # noqa: B006
        val_fraction: float = 0.1,
        download: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            tasks: ``topic20``, ``topic7`` or both (a multi-task run).
            remove: Parts of each post to strip, the scikit-learn way: any of ``headers``, ``footers``,
                ``quotes``. Empty keeps the bydate text as distributed (as the paper did).
            val_fraction: Fraction of the training split held out (seeded) for validation.
            download: Download the bydate archive when no local copy is found.
        """
        super().__init__(tasks=tasks, **kwargs)
        _stripper(remove)  # fail on a bad value now, not after reading the archive
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        self.remove = list(remove)
        self.val_fraction = val_fraction
        self.download = download

    def load_splits(self) -> dict[str, list[Example]]:
        source = locate_newsgroups(self.data_dir, download=self.download)
        self.source = str(source)
        splits = read_newsgroups(source, remove=self.remove)
        train, val = split_off(splits["train"], self.val_fraction, self.seed)
        return {"train": train, "val": val, "test": splits["test"]}
