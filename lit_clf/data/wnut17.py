"""WNUT 2017 Emerging and Rare Entities (NER on noisy user text): the shared task's CoNLL files, downloaded from
its repository when missing, read by :class:`~lit_clf.data.text.TextDataModule`.

Layout inside the data root: ``wnut17/{wnut17train.conll, emerging.dev.conll, emerging.test.annotated}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from lit_clf.data.download import data_root, fetch
from lit_clf.data.text import TextDataModule

#: The shared task's repository (leondz/emerging_entities_17, CC-BY 4.0), at the commit the files were checked at.
WNUT17_BASE_URL = "https://raw.githubusercontent.com/leondz/emerging_entities_17/e52a2d2/"
#: split -> (file name, sha256).
WNUT17_FILES = {
    "train": ("wnut17train.conll", "731820e13f71af324c6b55a1575ec2ce59fbaa2a0806f8f0400b98d56cd6a7a5"),
    "val": ("emerging.dev.conll", "e053b752b8155113ca66e7db08af5f2f5f43ab993694e4774f1ec5bad42312d8"),
    "test": ("emerging.test.annotated", "2aa79b764e56ec9264a1b30fdd9b70195bd00ff400b62edd8f399d5f13c178f0"),
}


def locate_wnut17(data_dir: str | None = None, download: bool = True) -> dict[str, Path]:
    """Split -> the path of its file under ``<data root>/wnut17/``, downloading (and checking) missing ones."""
    folder = data_root(data_dir) / "wnut17"
    paths = {}
    for split, (name, sha256) in WNUT17_FILES.items():
        path = folder / name
        if not path.is_file():
            fetch(WNUT17_BASE_URL + name, path, sha256, what=f"WNUT 17 {split}", places=[path], download=download)
        paths[split] = path
    return paths


class Wnut17DataModule(TextDataModule):
    """WNUT 2017 emerging entities: the ``ner`` token task (6 entity types, BIO tags; entity-level seqeval F1).

    Train 3,394 / dev 1,009 / test 1,287 sentences (verified after reading, like the other built-in datasets).
    """

    dataset_name: ClassVar[str] = "wnut17"
    known_sizes: ClassVar[dict[str, int]] = {"train": 3_394, "val": 1_009, "test": 1_287}
    known_labels: ClassVar[dict[str, dict[str, int]]] = {"train": {"ner": 13}}

    def __init__(self, download: bool = True, **kwargs: Any) -> None:
        """
        Args:
            download: Download the three files from the shared task's repository when missing.
        """
        self.download = download
        super().__init__(
            train="wnut17/wnut17train.conll",
            test="wnut17/emerging.test.annotated",
            val="wnut17/emerging.dev.conll",
            format="conll",
            name="wnut17",
            **kwargs,
        )

    def load_splits(self):
        paths = locate_wnut17(self.data_dir, download=self.download)
        self.files = {split: str(path) for split, path in paths.items()}
        self.source = str(paths["train"].parent)
        return super().load_splits()
