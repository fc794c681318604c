"""Datasets from the Hugging Face ``datasets`` library: a hub name, or a local copy saved with ``save_to_disk``.

``hf:NAME`` loads the hub dataset NAME; a config follows a colon (``hf:nyu-mll/glue:sst2``) or, for the old
one-segment names, a slash (``hf:glue/sst2``). ``hf:/a/local/folder`` loads a folder written by
``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or a folder of data files (train.csv, test.jsonl, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._files import SPLIT_NAMES, find_columns
from ._splits import complete_splits, default_metric
from ._types import Split, TextDataset, checked_label, checked_text

__all__ = ["open_hf_dataset", "hf_split", "load_hf_dataset"]


def _datasets_library() -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError("loading Hugging Face datasets needs the datasets library: pip install datasets") from None
    return datasets


def _from_hub(spec: str) -> Any:
    datasets = _datasets_library()
    if ":" in spec:
        attempts = [tuple(spec.rsplit(":", 1))]
    elif spec.count("/") == 1:  # an "owner/name" repo, or an old "name/config" pair: try both, in that order
        attempts = [(spec, None), tuple(spec.split("/"))]
    else:
        attempts = [(spec, None)]
    for number, (name, config) in enumerate(attempts, start=1):
        try:
            return datasets.load_dataset(name, config)
        except datasets.exceptions.DatasetNotFoundError:
            if number < len(attempts):
                continue
            raise ValueError(f"no Hugging Face dataset {spec!r} (as name {name!r}, config {config!r})") from None
        except Exception as error:  # the hub client raises many kinds: connection, timeout, HTTP, offline mode
            raise RuntimeError(
                f"could not load the Hugging Face dataset {spec!r}: {type(error).__name__}: {error}. "
                "This needs access to the Hugging Face Hub; without it, save the dataset on a machine that has "
                "it (datasets.load_dataset(...).save_to_disk(FOLDER)), copy FOLDER here and use 'hf:FOLDER'."
            ) from error
    raise AssertionError("unreachable")


def open_hf_dataset(spec: str) -> dict[str, Any]:
    """The splits of a hub or local Hugging Face dataset, keyed ``train`` / ``validation`` / ``test``.

    Other splits (e.g. IMDB's ``unsupervised``) are left out; a dataset without splits counts as train.
    """
    path = Path(spec).expanduser()
    if path.exists():
        datasets = _datasets_library()
        saved = path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists())
        loaded = datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path))
    elif spec.startswith(("/", ".", "~")):
        raise ValueError(f"{spec}: no such folder or file")
    else:
        loaded = _from_hub(spec)
    if not hasattr(loaded, "keys"):  # a single Dataset
        return {"train": loaded}
    splits = {}
    for found in loaded.keys():
        key = SPLIT_NAMES.get(found.lower())
        if key and key not in splits:
            splits[key] = loaded[found]
    if "train" not in splits:
        raise ValueError(f"Hugging Face dataset {spec!r} has no train split; it has {list(loaded.keys())}")
    return splits


def hf_split(dataset: Any, text_column: str, label_column: str, where: str) -> Split | None:
    """One ``datasets.Dataset`` as a Split (class ids become class names); None if every label is hidden (-1)."""
    for column in (text_column, label_column):
        if column not in dataset.column_names:
            raise ValueError(f"{where}: no column {column!r}; the columns found are {dataset.column_names}")
    labels = list(dataset[label_column])
    if labels and all(label == -1 for label in labels):  # GLUE-style test sets hide their labels
        return None
    names = getattr(dataset.features[label_column], "names", None)  # set for a ClassLabel feature
    if names is not None:
        if any(label == -1 for label in labels):
            raise ValueError(f"{where}: some labels are -1 (hidden) and some are not")
        labels = [names[label] for label in labels]
    texts = [checked_text(text, f"{where} row {i}") for i, text in enumerate(dataset[text_column])]
    labels = [checked_label(label, f"{where} row {i}") for i, label in enumerate(labels)]
    return Split(texts, labels)


def load_hf_dataset(spec: str, *, text_column: str = "text", label_column: str = "label",
                    seed: int = 42) -> TextDataset:
    """A TextDataset from ``hf:SPEC``: the dataset's own splits, with any missing one carved out of train."""
    splits = open_hf_dataset(spec)
    found = find_columns(f"hf:{spec}", splits["train"].column_names, text_column=text_column,
                         label_column=label_column)
    text_column, label_column = found["text_column"], found["label_column"]
    given = {key: hf_split(dataset, text_column, label_column, f"hf:{spec} {key}") for key, dataset in splits.items()}
    if given["train"] is None:
        raise ValueError(f"hf:{spec}: the train split has no labels")
    train, validation, test, rule = complete_splits(given["train"], given.get("validation"), given.get("test"), seed)
    metric = default_metric(train.labels)
    name = f"hf:{spec}"
    description = f"Hugging Face dataset {spec} (columns {text_column!r}, {label_column!r}); {rule}; metric {metric}."
    return TextDataset(name, train, validation, test, metric, description)
