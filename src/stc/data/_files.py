"""Labelled text from local files: CSV, TSV, JSON Lines and Parquet.

Every problem is a ValueError that names the file and the row or line, so a bad row in a 100k-line file can be
found at once. CSV/TSV/JSONL must be UTF-8 (a leading byte-order mark is fine).

Label sets (multi-label data): with ``label_separator`` each label is split on it, spaces stripped and empty
pieces dropped (``"Comedy; Drama"`` -> ``("Comedy", "Drama")``; an empty cell is the empty set); a JSON list in the label field (JSONL/JSON, or a
Parquet list column) is a label set with or without a separator. Warnings, not errors, go to this module's
logger (the ``stc`` command prints them on stderr): a separator that no label contains, and, without a
separator, a label column most of whose labels contain one of ``;``, ``|``, ``,``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Hashable
from pathlib import Path

from ._splits import complete_splits, default_metric
from ._types import (Split, TextDataset, checked_label, checked_label_set, checked_text, is_label_sets,
                     is_missing_label, label_set)

__all__ = ["read_labelled_file", "read_texts", "load_file_dataset", "file_columns", "SUFFIXES"]

logger = logging.getLogger(__name__)

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
#: Values a split column may hold, and the split each one means.
SPLIT_NAMES = {"train": "train", "validation": "validation", "dev": "validation", "valid": "validation",
               "val": "validation", "test": "test"}

#: The default column names, and the usual other names a file gives that column (matched ignoring case) when it has
#: no column of the default name and exactly one of these.
DEFAULT_COLUMNS = {"text_column": "text", "label_column": "label"}
USUAL_COLUMNS = {"text_column": ("text", "texts", "sentence", "review", "content", "document", "body", "comment",
                                 "message", "tweet"),
                 "label_column": ("label", "class", "category", "target", "sentiment", "labels")}
COLUMN_ROLES = {"text_column": "the texts", "label_column": "the labels", "text_pair_column": "the paired texts",
                "split_column": "the splits"}

_INTEGER = re.compile(r"[+-]?\d+")
Row = tuple[str, dict]  # (where the row is, e.g. "data.csv row 6 (line 7)"; the row's values by column)
#: Characters that join tags in a single cell ("Comedy;Drama"): a single-label read warns when most labels hold one.
LIKELY_SEPARATORS = (";", "|", ",")


def read_labelled_file(path: str | Path, *, text_column: str = "text", label_column: str = "label",
                       label_separator: str | None = None) -> Split:
    """All rows of a CSV/TSV/JSONL/Parquet file as one Split of (text, label), or of (text, label set).

    ``label_separator`` reads each label as a label set split on it; JSON lists are label sets anyway (module
    docstring).
    """
    path = Path(path)
    _check_separator(label_separator)
    columns, rows = _read_rows(path)
    found = find_columns(path, columns, text_column=text_column, label_column=label_column)
    return _split_from_rows(path, rows, found["text_column"], found["label_column"], label_separator)


def read_texts(path: str | Path, *, text_column: str = "text", text_pair_column: str | None = None) -> list:
    """The texts of a file to classify: a text column of CSV/TSV/JSONL/Parquet, or one text per line of a .txt;
    with ``text_pair_column``, (text, its pair) tuples of two columns."""
    path = Path(path)
    if text_pair_column is not None and path.suffix.lower() == ".txt":
        raise ValueError(f"{path}: text pairs need two columns (CSV/TSV/JSONL/Parquet), not a .txt file")
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise ValueError(f"{path}: file not found")
        texts = [line for line in _lines(_decode_utf8(path)) if line.strip()]
        if not texts:
            raise ValueError(f"{path}: the file has no non-empty lines")
        return texts
    columns, rows = _read_rows(path)
    found = find_columns(path, columns, text_column=text_column, text_pair_column=text_pair_column)
    return _texts_of_rows(rows, found["text_column"], found["text_pair_column"])


def _texts_of_rows(rows: list[Row], text_column: str, text_pair_column: str | None) -> list:
    """Each row's text, or (text, pair) with a pair column; a missing or empty one is named by row."""
    if text_pair_column is None:
        return [checked_text(row.get(text_column), where) for where, row in rows]
    return [(checked_text(row.get(text_column), where), checked_text(row.get(text_pair_column), where))
            for where, row in rows]


def load_file_dataset(path: str | Path, *, text_column: str = "text", label_column: str = "label",
                      split_column: str | None = None, seed: int = 42, name: str | None = None,
                      metric: str | None = None, label_separator: str | None = None,
                      text_pair_column: str | None = None) -> TextDataset:
    """A TextDataset from one file, split by its split column if it has one, else 80/10/10 (stratified, seeded).

    The split column is ``split_column`` when given, else a column named ``split`` whose values are all among
    train / validation (dev, valid, val) / test. Any split the file lacks is carved out of train.
    ``label_separator`` (or JSON lists) makes it multi-label: label sets, split by iterative stratification,
    scored with micro-F1 by default; a label that every text carries, or that no training text carries, is a
    ValueError naming it.
    """
    path = Path(path)
    _check_separator(label_separator)
    columns, rows = _read_rows(path)
    found = find_columns(path, columns, text_column=text_column, label_column=label_column,
                          text_pair_column=text_pair_column, split_column=split_column)
    text_column, label_column = found["text_column"], found["label_column"]
    text_pair_column, split_column = found["text_pair_column"], found["split_column"]
    if split_column is None and "split" in columns and _all_split_names(rows, "split"):
        split_column = "split"
    everything = _split_from_rows(path, rows, text_column, label_column, label_separator)  # one label type
    if text_pair_column is not None:  # each text the pair of its row's two columns
        everything = Split(_texts_of_rows(rows, text_column, text_pair_column), everything.labels)
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
    if is_label_sets(everything.labels):
        _check_every_label_is_learnable(path, everything, train)
    metric = metric or default_metric(train.labels)
    source = f"split column {split_column!r}" if split_column else "no split column"
    pairs = f"; text pairs ({text_column!r}, {text_pair_column!r})" if text_pair_column else ""
    description = f"Local file {path.name} ({source}{pairs}); {rule}; metric {metric}."
    return TextDataset(name or path.stem, train, validation, test, metric, description)


def file_columns(path: str | Path) -> list[str]:
    """The column names of a CSV/TSV/JSONL/Parquet file."""
    return _read_rows(Path(path))[0]


def _all_split_names(rows: list[Row], column: str) -> bool:
    return all(isinstance(row.get(column), str) and row[column].strip().lower() in SPLIT_NAMES for _, row in rows)


def find_columns(where: Path | str, found: list[str], **wanted: str | None) -> dict[str, str | None]:
    """The file's column for each argument (``text_column="text"``, ...): the named one, else the one column whose
    name matches it but for case and spaces, else, for a default name, the one column with a usual name for it
    (``review``, ``sentence``; ``category``, ``sentiment``, ...), said in a warning; otherwise a ValueError naming
    the argument and the columns found. Arguments given as None are not wanted (None back)."""
    resolved: dict[str, str | None] = {}
    for argument, name in wanted.items():
        if name is None or name in found:
            resolved[argument] = name
            continue
        taken = set(resolved.values())
        matches = [c for c in found if c.strip().casefold() == name.strip().casefold() and c not in taken]
        if not matches and name == DEFAULT_COLUMNS.get(argument):
            matches = [c for c in found if c.strip().casefold() in USUAL_COLUMNS[argument] and c not in taken]
        option = "--" + argument.replace("_", "-")
        if len(matches) != 1:
            among = f" ({' or '.join(map(repr, matches))}?)" if matches else ""
            raise ValueError(f"{where}: no column {name!r}{among}; the columns found are {found}: name the column "
                             f"with {argument}= ({option} for the stc command)")
        logger.warning("%s: no column %r; reading %s from column %r (another with %s=, %s for the stc command)",
                       where, name, COLUMN_ROLES[argument], matches[0], argument, option)
        resolved[argument] = matches[0]
    return resolved


def _split_from_rows(path: Path, rows: list[Row], text_column: str, label_column: str,
                     label_separator: str | None) -> Split:
    texts = [checked_text(row.get(text_column), where) for where, row in rows]
    values = [(where, row.get(label_column)) for where, row in rows]
    listed = next(((where, value) for where, value in values if isinstance(value, list)), None)
    if listed is not None:
        plain = next(((where, value) for where, value in values if not isinstance(value, list)), None)
        if plain is not None:
            checked_label(plain[1], plain[0])  # a missing label is named as missing, not as a plain label
            raise ValueError(f"{path}: column {label_column!r} mixes label sets and plain labels: {listed[0]} holds "
                             f"the list {listed[1]!r}, {plain[0]} the {type(plain[1]).__name__} {plain[1]!r}; "
                             f"write every label as a JSON list")
        return Split(texts, [checked_label_set(value, where) for where, value in values])
    if label_separator is not None:
        return Split(texts, _split_labels(path, values, label_column, label_separator))
    unlabelled = [where for where, value in values if is_missing_label(value)]
    if len(unlabelled) > 1:  # one is named by checked_label; many at once, so that one edit fixes the file
        shown = ", ".join(where.removeprefix(f"{path} ") for where in unlabelled[:5])
        raise ValueError(f"{path}: {len(unlabelled)} of {len(values)} rows have no label ({shown}"
                         f"{', ...' if len(unlabelled) > 5 else ''}): label them, or remove them to fit on the "
                         f"labelled rows")
    labels = [checked_label(value, where) for where, value in values]
    if path.suffix.lower() in (".csv", ".tsv"):
        labels = _integers_if_all_are(labels)
    _warn_if_labels_look_like_sets(path, labels, label_column)
    return Split(texts, labels)


def _check_separator(label_separator: str | None) -> None:
    if label_separator is not None and (not isinstance(label_separator, str) or not label_separator):
        raise ValueError(f"label_separator must be a non-empty string (or None), got {label_separator!r}")


def _split_labels(path: Path, values: list[tuple[str, object]], label_column: str,
                  separator: str) -> list[tuple[str, ...]]:
    """Each label split on ``separator`` into a label set; an empty cell is a text with no label (an empty set), a
    label with nothing between its separators is an error."""
    label_sets = []
    for where, value in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            label_sets.append(())
            continue
        label = str(checked_label(value, where))
        names = label_set(label.split(separator))
        if not names:
            raise ValueError(f"{where}: the label {label!r} holds no label name between its separators "
                             f"{separator!r}")
        label_sets.append(names)
    if not any(separator in str(value) for _, value in values):
        logger.warning("%s: no label in column %r contains the label separator %r, so every text carries one "
                       "label; is --label-separator (label_separator) the right one?", path, label_column, separator)
    return label_sets


def _warn_if_labels_look_like_sets(path: Path, labels: list[Hashable], label_column: str) -> None:
    """Warn when most labels hold the same likely separator ("Comedy;Drama"), read as one class each."""
    texts = [label for label in labels if isinstance(label, str)]
    counts = {char: sum(char in label for label in texts) for char in LIKELY_SEPARATORS}
    char = max(LIKELY_SEPARATORS, key=lambda c: counts[c])  # the first of the most frequent
    if counts[char] * 2 <= len(labels):
        return
    example = next(label for label in texts if char in label)
    logger.warning("%s: %d of %d labels in column %r contain %r (e.g. %r), so they look like label sets, yet each "
                   "is read as one class; to read them as label sets pass --label-separator %r "
                   "(label_separator=%r)", path, counts[char], len(labels), label_column, char, example, char, char)


def _check_every_label_is_learnable(path: Path, everything: Split, train: Split) -> None:
    """A ValueError naming a label that every text carries, or that every or no training text carries."""
    for label, count in everything.label_counts().items():
        if count == len(everything):
            raise ValueError(f"{path}: label {label!r} is carried by every text ({count} of {count}), so it tells "
                             f"no text from another; remove it from the label column")
    in_train = train.label_counts()
    for label, count in everything.label_counts().items():
        if label not in in_train:
            raise ValueError(f"{path}: label {label!r} is carried by no training text (only by {count} validation "
                             f"or test texts), so it cannot be learnt; move some of its texts to train")
        if in_train[label] == len(train):
            raise ValueError(f"{path}: label {label!r} is carried by every training text ({len(train)} of "
                             f"{len(train)}), so it cannot be learnt from train; move some texts without it to "
                             f"train")


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
