"""Reading a user's data files into rows: ``jsonl``, ``json``, ``csv``, ``tsv`` and CoNLL.

Every reader returns ``(line, row)`` pairs, ``row`` a dict of column name -> value, ``line`` the line the row
starts on (for messages). Every failure is a one-line ``ValueError`` naming the file and line.

CoNLL: one ``token<TAB or spaces>...<tag>`` line per word (the first field is the word, the last its tag), a blank
(or whitespace-only) line between sentences, ``-DOCSTART-`` lines skipped; a sentence is the row
``{"tokens": [...], "tags": [...]}``.

Quoting: csv follows RFC 4180 (a field in double quotes may hold commas, newlines and doubled quotes); tsv is the
IANA TSV format, which has no quoting: a quote is an ordinary character, so a text starting with ``"`` is read as
it is (pandas' ``quoting=QUOTE_NONE``), never merged with the rows after it. ``quoting`` overrides either.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = ["FORMATS", "QUOTINGS", "FileFormat", "Quoting", "read_rows"]

Quoting = Literal["auto", "rfc4180", "none"]
QUOTINGS: tuple[str, ...] = get_args(Quoting)
FileFormat = Literal["auto", "jsonl", "json", "csv", "tsv", "conll"]
FORMATS: tuple[str, ...] = tuple(name for name in get_args(FileFormat) if name != "auto")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".conll": "conll"}

Rows = list[tuple[int, dict[str, Any]]]


def file_format(path: Path, format: FileFormat = "auto") -> str:
    """The format of ``path``: ``format`` unless ``auto``, else from the suffix (``.conll``, ``.jsonl``, ...)."""
    if format != "auto":
        return format
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"{path}: cannot tell the format from the suffix {path.suffix or '(none)'!r}; set data.init_args.format "
            f"to one of {', '.join(FORMATS)}"
        )
    return found


def read_rows(
    path: str | Path,
    format: FileFormat = "auto",
    header: bool = True,
    column_names: list[str] | None = None,
    quoting: Quoting = "auto",
) -> Rows:
    """The rows of one data file.

    Args:
        path: The file.
        format: See :data:`FileFormat`; ``auto`` goes by the suffix.
        header: For csv/tsv: the first row names the columns. Without one, columns are named by ``column_names``,
            else by position (``"0"``, ``"1"``, ...).
        column_names: Names of the columns (csv/tsv), replacing the header row's or naming a headerless file's.
        quoting: For csv/tsv: ``rfc4180`` (double-quoted fields), ``none`` (quotes are text), or ``auto``: rfc4180
            for csv, none for tsv.
    """
    if quoting not in QUOTINGS:
        raise ValueError(f"quoting: expected one of {', '.join(QUOTINGS)}, got {quoting!r}")
    path = Path(path)
    kind = file_format(path, format)
    text = _read_text(path)
    if kind == "jsonl":
        return _jsonl(path, text)
    if kind == "json":
        return _json(path, text)
    if kind == "conll":
        return _conll(path, text)
    quoted = quoting == "rfc4180" or (quoting == "auto" and kind == "csv")
    return _delimited(path, text, "\t" if kind == "tsv" else ",", header, column_names, quoted)


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a data file; give the file's path")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x}); convert the file to UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _jsonl(path: Path, text: str) -> Rows:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: malformed JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def _json(path: Path, text: str) -> Rows:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ValueError(f'{path}: expected a JSON list of objects (or {{"data": [...]}}); use jsonl for one per line')
    return [(index + 1, row) for index, row in enumerate(data)]


def _delimited(
    path: Path, text: str, delimiter: str, header: bool, column_names: list[str] | None, quoted: bool = True
) -> Rows:
    style = {"quoting": csv.QUOTE_MINIMAL} if quoted else {"quoting": csv.QUOTE_NONE, "quotechar": None}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, **style)
    rows, names, pending_header = [], list(column_names) if column_names else None, header
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        if pending_header:  # the header row names the columns unless column_names does
            names, pending_header = names or record, False
            _refuse_duplicates(path, reader.line_num, names)
            continue
        names = names or [str(i) for i in range(len(record))]
        if len(record) != len(names):
            raise ValueError(
                f"{path}:{reader.line_num}: {len(record)} fields, expected {len(names)} ({', '.join(names)})"
            )
        rows.append((reader.line_num, dict(zip(names, record))))
    return rows


def _refuse_duplicates(path: Path, line: int, names: list[str]) -> None:
    first: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in first:
            raise ValueError(
                f"{path}:{line}: column {name!r} appears twice (columns {first[name]} and {position}); rename one "
                "(or give data.init_args.column_names)"
            )
        first[name] = position


def _conll(path: Path, text: str) -> Rows:
    rows: Rows = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                rows.append((start, {"tokens": tokens, "tags": tags}))
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected a word and its tag, got {line.strip()!r}")
        if not tokens:
            start = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        rows.append((start, {"tokens": tokens, "tags": tags}))
    return rows
