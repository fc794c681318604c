"""Labelled text from local files: CSV, TSV, JSON Lines and Parquet.

Every problem is a ValueError that names the file and the row or line, so a bad row in a 100k-line file can be
found at once. CSV/TSV/JSONL must be UTF-8 (a leading byte-order mark is fine).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Hashable
from pathlib import Path

from ._splits import complete_splits, default_metric
from ._types import Split, TextDataset, checked_label, checked_text

__all__ = ["read_labelled_file", "read_texts", "load_file_dataset", "file_columns", "SUFFIXES"]

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
#: Values a split column may hold, and the split each one means.
SPLIT_NAMES = {"train": "train", "validation": "validation", "dev": "validation", "valid": "validation",
               "val": "validation", "test": "test"}

_INTEGER = re.compile(r"[+-]?\d+")
Row = tuple[str, dict]  # (where the row is, e.g. "data.csv row 6 (line 7)"; the row's values by column)


def read_labelled_file(path: str | Path, *, text_column: str = "text", label_column: str = "label") -> Split:
    """All rows of a CSV/TSV/JSONL/Parquet file as one Split of (text, label)."""
    path = Path(path)
    columns, rows = _read_rows(path)
    _require_columns(path, columns, [text_column, label_column])
    return _split_from_rows(path, rows, text_column, label_column)


def read_texts(path: str | Path, *, text_column: str = "text") -> list[str]:
    """The texts of a file to classify: a text column of CSV/TSV/JSONL/Parquet, or one text per line of a .txt."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise ValueError(f"{path}: file not found")
        texts = [line for line in _lines(_decode_utf8(path)) if line.strip()]
        if not texts:
            raise ValueError(f"{path}: the file has no non-empty lines")
        return texts
    columns, rows = _read_rows(path)
    _require_columns(path, columns, [text_column])
    return [checked_text(row.get(text_column), where) for where, row in rows]


def load_file_dataset(path: str | Path, *, text_column: str = "text", label_column: str = "label",
                      split_column: str | None = None, seed: int = 42, name: str | None = None,
                      metric: str | None = None) -> TextDataset:
    """A TextDataset from one file, split by its split column if it has one, else 80/10/10 (stratified, seeded).

    The split column is ``split_column`` when given, else a column named ``split`` whose values are all among
    train / validation (dev, valid, val) / test. Any split the file lacks is carved out of train.
    """
    path = Path(path)
    columns, rows = _read_rows(path)
    _require_columns(path, columns, [text_column, label_column] + ([split_column] if split_column else []))
    if split_column is None and "split" in columns and _all_split_names(rows, "split"):
        split_column = "split"
    everything = _split_from_rows(path, rows, text_column, label_column)  # one label type for all splits
    members: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    if split_column is None:
        members["train"] = list(range(len(rows)))
    else:
        for index, (where, row) in enumerate(rows):
            value = row.get(split_column)
            key = SPLIT_NAMES.get(str(value).strip().lower()) if value is not None else None
            if key is None:
                raise ValueError(f"{where}: split value {value!r} in column {split_column!r} is not one of "
                                 f"{sorted(SPLIT_NAMES)}")
            members[key].append(index)
        if not members["train"]:
            raise ValueError(f"{path}: no rows have split 'train' in column {split_column!r}")
    given = {key: Split([everything.texts[i] for i in indices], [everything.labels[i] for i in indices])
             if indices else None for key, indices in members.items()}
    train, validation, test, rule = complete_splits(given["train"], given["validation"], given["test"], seed)
    metric = metric or default_metric(train.labels)
    source = f"split column {split_column!r}" if split_column else "no split column"
    description = f"Local file {path.name} ({source}); {rule}; metric {metric}."
    return TextDataset(name or path.stem, train, validation, test, metric, description)


def file_columns(path: str | Path) -> list[str]:
    """The column names of a CSV/TSV/JSONL/Parquet file."""
    return _read_rows(Path(path))[0]


def _all_split_names(rows: list[Row], column: str) -> bool:
    return all(isinstance(row.get(column), str) and row[column].strip().lower() in SPLIT_NAMES for _, row in rows)


def _require_columns(path: Path, found: list[str], wanted: list[str]) -> None:
    missing = [column for column in wanted if column not in found]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; the columns found are {found}")


def _split_from_rows(path: Path, rows: list[Row], text_column: str, label_column: str) -> Split:
    texts = [checked_text(row.get(text_column), where) for where, row in rows]
    labels = [checked_label(row.get(label_column), where) for where, row in rows]
    if path.suffix.lower() in (".csv", ".tsv"):
        labels = _integers_if_all_are(labels)
    return Split(texts, labels)


def _integers_if_all_are(labels: list[Hashable]) -> list[Hashable]:
    """CSV knows only strings: labels written as integers ("0", "1") come back as ints, like JSON's."""
    if all(isinstance(label, str) and _INTEGER.fullmatch(label.strip()) for label in labels):
        return [int(label) for label in labels]
    return labels


def _read_rows(path: Path) -> tuple[list[str], list[Row]]:
    """The file's column names and its rows; raises ValueError for a missing, empty or undecodable file."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a file")
    if suffix == ".parquet":
        columns, rows = _read_parquet(path)
    else:
        text = _decode_utf8(path)
        if not text.strip():
            raise ValueError(f"{path}: the file is empty")
        if suffix in (".csv", ".tsv"):
            columns, rows = _read_delimited(path, text, delimiter="," if suffix == ".csv" else "\t")
        else:
            columns, rows = _read_json_lines(path, text)
    if not rows:
        raise ValueError(f"{path}: the file has no data rows (columns found: {columns})")
    return columns, rows


def _decode_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not valid UTF-8 (byte 0x{data[error.start]:02x}); "
                         f"re-save the file as UTF-8") from None


def _lines(text: str) -> list[str]:
    """The lines of a text file: split at "\\n" (a "\\r" before it dropped) and nowhere else. ``str.splitlines``
    also breaks at U+0085, U+2028, U+2029, form feed, vertical tab and \\x1c-\\x1e, which real review text holds
    inside a line: one text would become two and the predictions would no longer line up with the input."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_delimited(path: Path, text: str, delimiter: str) -> tuple[list[str], list[Row]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # long documents exceed the default 128 kB per field
    rows: list[Row] = []
    try:
        columns = list(reader.fieldnames or [])
        for number, row in enumerate(reader, start=1):  # DictReader itself skips blank lines
            rows.append((f"{path} row {number} (line {reader.line_num})", row))
    except csv.Error as error:
        raise ValueError(f"{path}: line {reader.line_num} is not valid {path.suffix[1:].upper()}: {error}") from None
    finally:
        csv.field_size_limit(old_limit)
    return columns, rows


def _read_json_lines(path: Path, text: str) -> tuple[list[str], list[Row]]:
    """One JSON object per line (blank lines skipped); a ``.json`` file holding one array of objects works too."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON at line {error.lineno}: {error.msg}") from None
        numbered = [(f"{path} record {i}", record) for i, record in enumerate(records, start=1)]
    else:
        numbered = []
        for number, line in enumerate(_lines(text), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((f"{path} line {number}", json.loads(line)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number} is not valid JSON: {error.msg}") from None
    columns: dict[str, None] = {}
    for where, record in numbered:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        columns.update(dict.fromkeys(record))
    return list(columns), numbered


def _read_parquet(path: Path) -> tuple[list[str], list[Row]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise ImportError(f"reading {path.name} needs pyarrow: pip install pyarrow") from None
    try:
        table = parquet.read_table(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid family
        raise ValueError(f"{path}: not a readable Parquet file: {error}") from None
    rows = [(f"{path} row {i}", row) for i, row in enumerate(table.to_pylist())]
    return list(table.column_names), rows
