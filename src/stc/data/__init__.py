"""Labelled text datasets for stc: offline corpora, the paper's datasets, local files and Hugging Face datasets.

>>> from stc.data import load_dataset
>>> dataset = load_dataset("mr")            # doctest: +SKIP
>>> dataset.train.texts[0], dataset.train.labels[0]  # doctest: +SKIP

See ``docs/datasets.md`` for every name, its source, label rule, split rule and sizes.
"""

from ._files import read_labelled_file, read_texts
from ._load import available_datasets, load_dataset
from ._splits import stratified_split
from ._types import Split, TextDataset

__all__ = ["Split", "TextDataset", "load_dataset", "read_labelled_file", "read_texts", "stratified_split", "available_datasets"]
