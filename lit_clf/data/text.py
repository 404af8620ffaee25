"""Your own data: :class:`TextDataModule` reads local files (jsonl, json, csv, tsv, CoNLL) or a Hugging Face
``datasets`` dataset into the same examples and task specs the built-in datasets give both model families."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from lit_clf.data.base import SPLITS, ClassificationDataModule, split_off
from lit_clf.data.download import data_root
from lit_clf.data.files import FileFormat, Quoting, file_format, read_rows
from lit_clf.data.tasks import TASK_KINDS, Example, SpanScheme, TaskKind, TaskSpec, collect_labels

__all__ = ["TextDataModule"]

#: Names a split may have in a split column or a ``datasets`` dataset, per lit_clf split.
_SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation", "dev", "valid"), "test": ("test",)}
_CONLL_TASK = "ner"


class TextDataModule(ClassificationDataModule):
    """Any classification data in common layouts, configured with options only (no code per dataset).

    Sources, one of: a file per split (``train``, ``val``, ``test``; no ``val``: a seeded ``val_fraction`` of
    train), one file with a split column (``path`` + ``split_column``), or a ``datasets`` dataset (``hf_dataset``:
    a folder saved with ``save_to_disk``, a folder of data files, or a hub name; never remote code).

    Tasks: ``label_columns`` maps each task to its column; ``task_kinds`` marks token tasks (one label per word of
    ``words_column``; in csv/tsv, words and labels are space-separated). CoNLL files need neither: their task is
    ``ner``, a token task with BIO tags. Label sets come from the training split, sorted (the outside label first
    for token tasks), unless ``labels`` gives them; a label seen only in validation or test is an error unless
    ``labels_from`` is ``all``.
    """

    def __init__(
        self,
        label_columns: dict[str, str] | None = None,
        tasks: list[str] | None = None,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        path: str | None = None,
        split_column: str = "split",
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        format: FileFormat = "auto",
        header: bool = True,
        column_names: list[str] | None = None,
        quoting: Quoting = "auto",
        text_column: str = "text",
        words_column: str = "tokens",
        id_column: str | None = None,
        task_kinds: dict[str, TaskKind] | None = None,
        schemes: dict[str, SpanScheme] | None = None,
        labels: dict[str, list[str]] | None = None,
        labels_from: Literal["train", "all"] = "train",
        val_fraction: float = 0.1,
        label_separator: str = "|",
        name: str = "data",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            label_columns: Task name -> the column holding its labels, e.g. ``{sentiment: label}``. Unset for
                CoNLL files: ``{ner: tags}``.
            tasks: The tasks to train and evaluate, among ``label_columns``'s; unset: all of them.
            train: Training file (jsonl, json, csv, tsv or CoNLL). A relative path that does not exist from the
                working folder is looked for under the data root (``data_dir``, else ``$LIT_CLF_DATA``), as the
                built-in datasets are; so are ``val``, ``test`` and ``path``.
            val: Validation file; unset: a seeded ``val_fraction`` of the training split.
            test: Test file.
            path: One file holding every split, told apart by ``split_column`` (values ``train``,
                ``val``/``validation``/``dev``, ``test``); instead of ``train``/``val``/``test``.
            split_column: The split column of ``path``.
            hf_dataset: A ``datasets`` dataset: a folder saved with ``save_to_disk``, a folder of data files, or a
                hub name (read with ``load_dataset``; no remote code). Splits ``train``, ``validation`` (or
                ``val``/``dev``), ``test``.
            hf_config: The dataset's configuration name, if it has several.
            format: File format: ``auto`` goes by the suffix (``.jsonl``, ``.json``, ``.csv``, ``.tsv``,
                ``.conll``); or ``jsonl``, ``json``, ``csv``, ``tsv``, ``conll``.
            header: csv/tsv files start with a header row naming the columns.
            column_names: Column names for csv/tsv files: of a file without a header row (default: ``"0"``,
                ``"1"``, ... by position), or replacing the header row's.
            quoting: csv/tsv quoting: ``auto`` (csv: RFC 4180, double-quoted fields; tsv: none, the TSV format,
                where a quote is an ordinary character), ``rfc4180`` or ``none``.
            text_column: The column with the input text (sequence tasks).
            words_column: The column with the words of token tasks (a list, or space-separated text); the text is
                the words joined by spaces. CoNLL files: ``tokens``.
            id_column: A column of example ids; unset: ``<split>/<index>``.
            task_kinds: Task name -> ``sequence`` (one label per example, the default), ``multilabel`` (any number
                of labels per example: a list, or text split at ``label_separator``; none is allowed) or ``token``
                (one label per word). CoNLL tasks are token tasks.
            schemes: Token task name -> how its labels mark spans: ``bio`` (IOB2 tags, outside ``O``; the default)
                or ``runs`` (a span is a run of equal labels, outside ``Other``: MASSIVE's word labels).
            labels: Task name -> its label list in class-id order, instead of the training split's sorted labels.
            labels_from: ``train``: the labels are the training split's, and a label seen only in validation or
                test is an error; ``all``: collected over every split (as the built-in datasets do).
            val_fraction: Fraction of the training split held out (seeded) when there is no validation split.
            label_separator: Separator of the labels of a multi-label task written as text (csv/tsv cells).
            name: The dataset's name in run names, W&B tags and reports.
        """
        sources = [bool(train or test or val), bool(path), bool(hf_dataset)]
        if sum(sources) != 1:
            raise ValueError(
                "data: give one source: train/val/test files, one file with a split column (path), or hf_dataset"
            )
        if not hf_dataset and not path and not (train and test):
            raise ValueError("data: give both a train and a test file (val is optional)")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        files = [Path(f) for f in (train, val, test, path) if f]
        conll = bool(files) and all(file_format(f, format) == "conll" for f in files)
        if label_columns is None:
            if not conll:
                raise ValueError("label_columns: give each task's label column, e.g. {sentiment: label}")
            label_columns = {_CONLL_TASK: "tags"}
        if not label_columns:
            raise ValueError("label_columns: give at least one task and its column")
        kinds = dict(task_kinds or {})
        unknown = sorted(set(kinds) - set(label_columns))
        if unknown:
            raise ValueError(f"task_kinds: {unknown[0]!r} is not a task of label_columns ({', '.join(label_columns)})")
        if conll:
            kinds = {task: "token" for task in label_columns}
            words_column = "tokens"
        bad = [kind for kind in kinds.values() if kind not in TASK_KINDS]
        if bad:
            raise ValueError(f"task_kinds: {bad[0]!r} is not a task kind ({', '.join(TASK_KINDS)})")
        self.available_tasks = {task: kinds.get(task, "sequence") for task in label_columns}
        self.task_schemes = {
            task: (schemes or {}).get(task, "bio") for task, kind in self.available_tasks.items() if kind == "token"
        }
        super().__init__(tasks=list(tasks or label_columns), **kwargs)
        self.dataset_name = name  # run names, tags, reports
        self.label_columns = dict(label_columns)
        self.files = {split: self._resolve(file) for split, file in (("train", train), ("val", val), ("test", test))}
        self.path, self.split_column = self._resolve(path), split_column
        self.hf_dataset, self.hf_config = hf_dataset, hf_config
        self.format, self.header, self.column_names = format, header, column_names
        self.quoting = quoting
        self.text_column, self.words_column, self.id_column = text_column, words_column, id_column
        self.labels = {task: list(values) for task, values in (labels or {}).items()}
        self.labels_from = labels_from
        self.val_fraction = val_fraction
        self.label_separator = label_separator
        self._where: dict[str, str] = {}

    def _resolve(self, file: str | None) -> str | None:
        if not file or Path(file).is_absolute() or Path(file).exists():
            return file
        under_root = data_root(self.data_dir) / file
        return str(under_root) if under_root.exists() else file

    # ------------------------------------------------------------------ reading
    def load_splits(self) -> dict[str, list[Example]]:
        if self.hf_dataset:
            raw = self._hf_rows()
        elif self.path:
            raw = self._split_column_rows()
        else:
            raw = {
                split: [(f"{file}:{line}", row) for line, row in self._read(file)]
                for split, file in self.files.items()
                if file
            }
        splits = {split: self._examples(split, rows) for split, rows in raw.items()}
        if "val" not in splits and splits.get("train"):
            splits["train"], splits["val"] = split_off(splits["train"], self.val_fraction, self.seed)
        for split in SPLITS:
            if not splits.get(split):
                raise ValueError(f"{self._source_of(split)}: the {split} split has no examples")
        return splits

    def _read(self, file: str) -> list[tuple[int, dict[str, Any]]]:
        return read_rows(file, self.format, self.header, self.column_names, self.quoting)

    def _source_of(self, split: str) -> str:
        return self.hf_dataset or self.path or self.files.get(split) or self.files["train"] or "data"

    def _split_column_rows(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        rows: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for line, row in self._read(self.path):
            where = f"{self.path}:{line}"
            if self.split_column not in row:
                raise ValueError(f"{self.path}: no split column {self.split_column!r} (columns: {', '.join(row)})")
            split = _lit_split(str(row[self.split_column]))
            if split is None:
                raise ValueError(
                    f"{where}: split {row[self.split_column]!r} is not one of train, val/validation/dev, test"
                )
            rows.setdefault(split, []).append((where, row))
        return rows

    def _hf_rows(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        dataset = _load_hf(self.hf_dataset, self.hf_config)
        rows: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for name in dataset:
            split = _lit_split(name)
            if split is None:
                continue
            part = dataset[name]
            decode = _label_decoders(part.features)
            rows[split] = [
                (f"{self.hf_dataset}[{name}] row {index}", {k: decode.get(k, _same)(v) for k, v in row.items()})
                for index, row in enumerate(part)
            ]
        if "train" not in rows or "test" not in rows:
            raise ValueError(f"hf_dataset: {self.hf_dataset} has splits {', '.join(dataset)}; it needs train and test")
        return rows

    def _examples(self, split: str, rows: list[tuple[str, dict[str, Any]]]) -> list[Example]:
        examples = []
        for index, (where, row) in enumerate(rows):
            example = self._example(split, index, where, row)
            self._where[example.id] = where
            examples.append(example)
        return examples

    def _example(self, split: str, index: int, where: str, row: dict[str, Any]) -> Example:
        token = any(self.available_tasks[task] == "token" for task in self.tasks)
        words: list[str] | None = None
        if token:
            words = _words(_column(row, self.words_column, where), where, self.words_column)
            text = " ".join(words)
        else:
            text = _column(row, self.text_column, where)
            if not isinstance(text, str):
                raise ValueError(f"{where}: column {self.text_column!r} should hold text, got {text!r}")
        if not text.strip():
            raise ValueError(f"{where}: empty text")
        labels: dict[str, str | tuple[str, ...]] = {}
        for task in self.tasks:
            value = _column(row, self.label_columns[task], where)
            if self.available_tasks[task] == "multilabel":
                items = value.split(self.label_separator) if isinstance(value, str) else value
                if not isinstance(items, (list, tuple)):
                    raise ValueError(
                        f"{where}: {task} labels should be a list (or text split at "
                        f"{self.label_separator!r}), got {value!r}"
                    )
                labels[task] = tuple(sorted({str(item).strip() for item in items if str(item).strip()}))
            elif self.available_tasks[task] == "token":
                tags = _words(value, where, self.label_columns[task])
                if len(tags) != len(words or []):
                    raise ValueError(f"{where}: {len(words or [])} words but {len(tags)} {task} labels")
                labels[task] = tuple(tags)
            else:
                if isinstance(value, (list, tuple, dict)):
                    raise ValueError(
                        f"{where}: {task} labels are a list ({value!r}) but {task} is a {self.available_tasks[task]} "
                        f"task (one label); a task with several labels per example: data.init_args.task_kinds: "
                        f"{{{task}: multilabel}}"
                    )
                label = str(value).strip() if value is not None else ""
                if not label:
                    raise ValueError(f"{where}: empty {task} label (column {self.label_columns[task]!r})")
                labels[task] = label
        ident = str(row[self.id_column]) if self.id_column and self.id_column in row else f"{split}/{index}"
        return Example(ident, text, labels)

    # ------------------------------------------------------------------ labels
    def build_task_specs(self) -> list[TaskSpec]:
        """Labels from the training split (or every split, or the config), checked against every split."""
        splits = self.full_splits
        specs = []
        for name, kind in self._selected():
            scheme = self.task_schemes.get(name, "runs")
            outside = TaskSpec(name, kind, (), scheme).outside
            if name in self.labels:
                labels = tuple(self.labels[name])
                source = f"data.init_args.labels.{name}"
            else:
                pool = splits["train"] if self.labels_from == "train" else [e for s in splits.values() for e in s]
                labels = collect_labels(pool, name, kind, outside)
                source = "training split's" if self.labels_from == "train" else "data's"
            known = set(labels)
            for split, examples in splits.items():
                for example in examples:
                    value = example.labels[name]
                    for label in value if isinstance(value, tuple) else (value,):
                        if label not in known:
                            where = self._where.get(example.id, f"{split} example {example.id!r}")
                            fix = (
                                f"add it to data.init_args.labels.{name}"
                                if name in self.labels
                                else ("set data.init_args.labels_from all, or list the labels in data.init_args.labels")
                            )
                            raise ValueError(
                                f"{where}: {name} label {label!r} is not among the {source} labels ({len(labels)}); "
                                f"{fix}"
                            )
            specs.append(TaskSpec(name, kind, labels, scheme))
        return specs


def _lit_split(name: str) -> str | None:
    lowered = name.strip().lower()
    return next((split for split, names in _SPLIT_NAMES.items() if lowered in names), None)


def _column(row: dict[str, Any], column: str, where: str) -> Any:
    if column not in row:
        raise ValueError(f"{where}: no column {column!r} (columns: {', '.join(map(str, row))})")
    return row[column]


def _words(value: Any, where: str, column: str) -> list[str]:
    """A list of words or word labels: a list, or space-separated text (csv/tsv)."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{where}: column {column!r} should hold a non-empty list of words or labels, got {value!r}")
    words = [str(item) for item in items]
    if any(not word.strip() or len(word.split()) != 1 for word in words):
        raise ValueError(f"{where}: column {column!r} has an empty item or one with spaces inside")
    return words


def _same(value: Any) -> Any:
    return value


def _label_decoders(features: Any) -> dict[str, Any]:
    """Column -> a function turning ``ClassLabel`` ids (or lists of them) into label names."""
    from datasets import ClassLabel

    decoders = {}
    for column, feature in (features or {}).items():
        if isinstance(feature, ClassLabel):
            decoders[column] = feature.int2str
        elif isinstance(getattr(feature, "feature", None), ClassLabel):
            names = feature.feature.int2str
            decoders[column] = lambda ids, names=names: [names(i) for i in ids]
    return decoders


def _load_hf(name: str, config: str | None):
    """A ``DatasetDict`` from a ``save_to_disk`` folder, a folder of data files or a hub name."""
    try:
        import datasets
    except ImportError:
        raise ValueError("hf_dataset: needs the datasets library (pip install datasets)") from None
    folder = Path(name).expanduser()
    try:
        if folder.is_dir() and any((folder / marker).exists() for marker in ("dataset_dict.json", "state.json")):
            loaded = datasets.load_from_disk(str(folder))
        else:
            loaded = datasets.load_dataset(name, config)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"hf_dataset: {name}: cannot load it ({reason})") from None
    if isinstance(loaded, datasets.Dataset):
        raise ValueError(f"hf_dataset: {name} is a single split; it needs train and test splits (a DatasetDict)")
    return loaded
