"""The paper's datasets: IMDB and SST-2 from the Hugging Face Hub, EDOS from the user's own CSV.

The hub datasets need internet access to the Hugging Face Hub (or its cache); EDOS is licensed for research
use only and is not redistributed, so the caller points at a local copy: ``load_dataset("edos:/path/edos.csv")``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ._files import file_columns, load_file_dataset
from ._huggingface import hf_split, open_hf_dataset
from ._splits import stratified_split
from ._types import TextDataset

__all__ = ["PAPER_DATASETS", "load_paper_dataset"]

_DESCRIPTIONS = {
    "imdb": "IMDB movie reviews, neg/pos (HF stanfordnlp/imdb; needs the hub); 20 % of train held out as "
            "validation (stratified, seed {seed}), test = the 25k test set; metric accuracy.",
    "sst2": "SST-2 sentences, negative/positive (HF nyu-mll/glue, config sst2; needs the hub); 3 % of train held "
            "out as validation (stratified, seed {seed}), test = the GLUE validation set (GLUE test labels are "
            "hidden); metric accuracy.",
    "edos": "EDOS sexism detection, subtask A (SemEval-2023 Task 10), from a local CSV: "
            "load_dataset('edos:/path/edos.csv'), columns text, label (or label_sexist), split = train/dev/test; "
            "metric macro_f1.",
}
PAPER_DATASETS = {name: text.format(seed=42) for name, text in _DESCRIPTIONS.items()}


def _imdb(seed: int) -> TextDataset:
    splits = open_hf_dataset("stanfordnlp/imdb")
    train = hf_split(splits["train"], "text", "label", "imdb train")
    test = hf_split(splits["test"], "text", "label", "imdb test")
    train, validation = stratified_split(train.texts, train.labels, (0.8, 0.2), seed)
    return TextDataset("imdb", train, validation, test, "accuracy", _DESCRIPTIONS["imdb"].format(seed=seed))


def _sst2(seed: int) -> TextDataset:
    splits = open_hf_dataset("nyu-mll/glue:sst2")
    train = hf_split(splits["train"], "sentence", "label", "sst2 train")
    test = hf_split(splits["validation"], "sentence", "label", "sst2 validation")
    train, validation = stratified_split(train.texts, train.labels, (0.97, 0.03), seed)
    return TextDataset("sst2", train, validation, test, "accuracy", _DESCRIPTIONS["sst2"].format(seed=seed))


def _edos(path: str, text_column: str, label_column: str, split_column: str | None, seed: int) -> TextDataset:
    if not path:
        raise ValueError("EDOS is not redistributed: load it from your copy with load_dataset('edos:/path/edos.csv')")
    if label_column == "label" and "label" not in file_columns(path):
        label_column = "label_sexist"  # the column name in the official edos_labelled_aggregated.csv
    dataset = load_file_dataset(path, text_column=text_column, label_column=label_column,
                                split_column=split_column or "split", seed=seed, name="edos", metric="macro_f1")
    classes = dataset.classes
    if len(classes) != 2:
        raise ValueError(f"{path}: EDOS subtask A is binary, but column {label_column!r} holds {classes}")
    description = f"EDOS sexism detection (SemEval-2023 Task 10 A) from {Path(path).name}: " + \
        dataset.description.split("; ", 1)[1]
    return dataclasses.replace(dataset, description=description)


def load_paper_dataset(name: str, *, text_column: str = "text", label_column: str = "label",
                       split_column: str | None = None, seed: int = 42) -> TextDataset:
    """One of the paper's datasets: ``"imdb"``, ``"sst2"``, or ``"edos:/path/to/edos.csv"``."""
    key, _, path = name.partition(":")
    if key == "imdb":
        return _imdb(seed)
    if key == "sst2":
        return _sst2(seed)
    if key == "edos":
        return _edos(path, text_column, label_column, split_column, seed)
    raise ValueError(f"{name!r} is not one of the paper's datasets: {sorted(PAPER_DATASETS)}")
