"""MASSIVE (Amazon, 1.1 release): locate or download a locale's jsonl and read it into ``Example``s.

Two tasks share each utterance: ``intent`` (one label) and ``slots`` (one label per whitespace word
of ``utt``, taken from the ``[type : value]`` spans of ``annot_utt``; ``Other`` outside spans).

Layout inside the data root, first match wins::

    massive/<locale>.jsonl
    massive/1.1/data/<locale>.jsonl                          (the 1.1 release tarball, extracted)
    massive/amazon-massive-dataset-1.1/data/<locale>.jsonl
    massive/data/<locale>.jsonl
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from lit_clf.data.base import ClassificationDataModule
from lit_clf.data.download import DataNotFoundError, data_root, extract_tar, fetch, refuse_wrong_kind
from lit_clf.data.tasks import OTHER, Example, TaskKind

#: The 1.1 release tarball (all locales; 1.1 added ca-ES to 1.0).
MASSIVE_URL = "https://amazon-massive-nlu-dataset.s3.amazonaws.com/amazon-massive-dataset-1.1.tar.gz"
#: sha256 of the 1.1 tarball; checked on download only.
MASSIVE_SHA256 = "4cba5faa11c71437928e17cb1b9b3d8b8e727e7ea363a3a9a8045e19c0491577"

MASSIVE_TASKS: dict[str, TaskKind] = {"intent": "sequence", "slots": "token"}
MASSIVE_SPLITS = ("train", "dev", "test")

#: The 51 MASSIVE 1.0 locales plus ca-ES (added in 1.1).
MASSIVE_LOCALES = (
    "af-ZA", "am-ET", "ar-SA", "az-AZ", "bn-BD", "ca-ES", "cy-GB", "da-DK", "de-DE", "el-GR", "en-US",
    "es-ES", "fa-IR", "fi-FI", "fr-FR", "he-IL", "hi-IN", "hu-HU", "hy-AM", "id-ID", "is-IS", "it-IT",
    "ja-JP", "jv-ID", "ka-GE", "km-KH", "kn-IN", "ko-KR", "lv-LV", "ml-IN", "mn-MN", "ms-MY", "my-MM",
    "nb-NO", "nl-NL", "pl-PL", "pt-PT", "ro-RO", "ru-RU", "sl-SL", "sq-AL", "sv-SE", "sw-KE", "ta-IN",
    "te-IN", "th-TH", "tl-PH", "tr-TR", "ur-PK", "vi-VN", "zh-CN", "zh-TW",
)  # fmt: skip

_FOLDER = "massive"
_ARCHIVE = "amazon-massive-dataset-1.1.tar.gz"
_LAYOUTS = ("", "1.1/data", "amazon-massive-dataset-1.1/data", "data")
_FIELDS = ("id", "partition", "intent", "utt", "annot_utt")
# A slot span: "[type : value]". The type stops at the first colon, so values may contain colons.
_SPAN = re.compile(r"\[([^\[\]:]*):([^\[\]]*)\]")
_WORD = re.compile(r"\S+")


def locate_massive(locale: str = "en-US", data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Find ``<locale>.jsonl`` under the data root, downloading and extracting the release if needed.

    Args:
        locale: A MASSIVE locale such as ``en-US`` (see ``MASSIVE_LOCALES``).
        data_dir: Data root (see ``lit_clf.data.download.data_root``).
        download: Download ``MASSIVE_URL`` into ``<root>/massive/`` when no jsonl or tarball is found.

    Returns:
        Path of the locale's jsonl file.

    Raises:
        ValueError: Unknown locale, or an archive without the locale's file.
        DataNotFoundError: Nothing on disk and downloading is off or failed.
    """
    _check_locale(locale)
    folder = data_root(data_dir) / _FOLDER
    candidates = [folder / layout / f"{locale}.jsonl" for layout in _LAYOUTS]
    refuse_wrong_kind(files=[*candidates, folder / _ARCHIVE])
    found = next((path for path in candidates if path.is_file()), None)
    if found is not None:
        return found
    archive = folder / _ARCHIVE
    if not archive.is_file():
        places = [*candidates, archive]
        fetch(MASSIVE_URL, archive, MASSIVE_SHA256, what=f"MASSIVE {locale}", places=places, download=download)
    extract_tar(archive, folder)
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise ValueError(f"{archive}: has no data/{locale}.jsonl; delete it to download the 1.1 release again")
    return found


def read_massive(path: Path) -> dict[str, list[Example]]:
    """Read one locale's jsonl into train, dev and test examples, in file order.

    Args:
        path: A MASSIVE jsonl file (what ``locate_massive`` returns).

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}`` by the rows' ``partition``; each example has
        the row id, ``text=utt`` and labels ``{"intent": str, "slots": tuple with one label per word}``.

    Raises:
        ValueError: ``file:line: what was wrong`` for a malformed row; or a partition with no rows.
        DataNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError.looked_for("MASSIVE jsonl", [path], "the file does not exist")
    splits: dict[str, list[Example]] = {split: [] for split in MASSIVE_SPLITS}
    # Split on b"\n" only: str.splitlines() would also break at U+2028 and friends inside JSON strings.
    for line_no, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            partition, example = _parse_row(line)
        except ValueError as err:
            raise ValueError(f"{path}:{line_no}: {err}") from None
        splits[partition].append(example)
    for split, examples in splits.items():
        if not examples:
            raise ValueError(f"{path}: partition {split!r} has no rows (expected train, dev and test rows)")
    return splits


def parse_slot_labels(annot_utt: str, utt: str) -> tuple[str, ...]:
    """One slot label per whitespace word of ``utt``, read from MASSIVE's bracketed ``annot_utt``.

    ``"wake me at [time : five am]"`` gives ``("Other", "Other", "Other", "time", "time")``. A word
    touching a span (``[date : monday]'s``, or scripts written without spaces) takes that span's type;
    if it touches several, the first.

    Args:
        annot_utt: The utterance with ``[type : value]`` spans.
        utt: The plain utterance; its words must equal those of ``annot_utt`` with the brackets removed.

    Returns:
        A tuple of ``len(utt.split())`` labels: a slot type, or ``OTHER``.

    Raises:
        ValueError: Unbalanced or malformed brackets, or words that do not match ``utt``.
    """
    pieces = _annotated_pieces(annot_utt)
    plain = "".join(text for text, _ in pieces)
    char_labels: list[str] = []
    for text, label in pieces:
        char_labels.extend([label] * len(text))
    words = list(_WORD.finditer(plain))
    if [word.group() for word in words] != utt.split():
        raise ValueError(f"annot_utt {annot_utt!r} without brackets is {plain!r}, whose words differ from utt {utt!r}")
    return tuple(
        next((label for label in char_labels[word.start() : word.end()] if label != OTHER), OTHER) for word in words
    )


def _annotated_pieces(annot_utt: str) -> list[tuple[str, str]]:
    """Split ``annot_utt`` into ``(text, label)`` pieces: plain text is ``OTHER``, span values their type."""
    pieces: list[tuple[str, str]] = []
    start = 0
    for span in _SPAN.finditer(annot_utt):
        slot, value = span.group(1).strip(), span.group(2).strip()
        if not slot or not value or len(slot.split()) != 1:
            raise ValueError(f"annot_utt {annot_utt!r}: malformed slot {span.group()!r} (expected '[type : value]')")
        pieces += [(annot_utt[start : span.start()], OTHER), (value, slot)]
        start = span.end()
    pieces.append((annot_utt[start:], OTHER))
    for text, label in pieces:
        stray = next((i for i, char in enumerate(text) if char in "[]"), None) if label == OTHER else None
        if stray is not None:
            raise ValueError(f"annot_utt {annot_utt!r}: unbalanced or malformed brackets at {text[stray:].strip()!r}")
    return pieces


def _parse_row(line: bytes) -> tuple[str, Example]:
    """``(partition, Example)`` for one jsonl line; ValueError (without file:line) when it is malformed."""
    try:
        row = json.loads(line.decode("utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise ValueError(f"malformed JSON ({err})") from None
    _check_fields(row)
    if row["partition"] not in MASSIVE_SPLITS:
        raise ValueError(f"partition {row['partition']!r} is not one of {', '.join(MASSIVE_SPLITS)}")
    slots = parse_slot_labels(row["annot_utt"], row["utt"])
    example = Example(id=str(row["id"]), text=row["utt"], labels={"intent": row["intent"], "slots": slots})
    return row["partition"], example


def _check_fields(row: Any) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for name in _FIELDS:
        if name not in row:
            raise ValueError(f"missing field {name!r} (each row needs {', '.join(_FIELDS)})")
        if not isinstance(row[name], str) and not (name == "id" and isinstance(row[name], int)):
            raise ValueError(f"field {name!r} must be a string, got {row[name]!r}")


def _check_locale(locale: str) -> None:
    if locale in MASSIVE_LOCALES:
        return
    close = difflib.get_close_matches(locale, MASSIVE_LOCALES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"locale: unknown MASSIVE locale {locale!r}{hint}; valid ones are listed in "
        f"lit_clf.data.massive.MASSIVE_LOCALES ({len(MASSIVE_LOCALES)} language-COUNTRY codes such as en-US, de-DE)"
    )


class MassiveDataModule(ClassificationDataModule):
    """MASSIVE (one locale, default en-US): ``intent`` (60 labels) and word-level ``slots``.

    The official train/dev/test partitions serve as train/val/test.
    """

    available_tasks: ClassVar[dict[str, TaskKind]] = MASSIVE_TASKS
    dataset_name: ClassVar[str] = "massive"
    # Every locale holds the same utterances (MASSIVE is parallel); slots: 55 types and Other.
    known_sizes: ClassVar[dict[str, int]] = {"train": 11_514, "val": 2_033, "test": 2_974}
    known_labels: ClassVar[dict[str, dict[str, int]]] = {"train": {"intent": 60, "slots": 56}}

    def __init__(
        self,
        tasks: list[str] = ["intent"],  # noqa: B006 (jsonargparse shows list defaults; never mutated)
        locale: str = "en-US",
        download: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            tasks: ``intent``, ``slots`` or both (a multi-task run).
            locale: MASSIVE locale, e.g. ``en-US``, ``de-DE``.
            download: Download the MASSIVE 1.1 release when no local copy is found.
        """
        super().__init__(tasks=tasks, **kwargs)
        _check_locale(locale)
        self.locale = locale
        self.download = download

    def load_splits(self) -> dict[str, list[Example]]:
        path = locate_massive(self.locale, self.data_dir, download=self.download)
        self.source = str(path)
        splits = read_massive(path)
        return {"train": splits["train"], "val": splits["dev"], "test": splits["test"]}
