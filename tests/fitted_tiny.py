"""Fitted STC models on the tiny random backbones of tests/conftest.py, shared by the export and serving tests."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

import stc
from stc.head import LinearHead, make_final_classifier
from stc.extract import parse_key

from .conftest import build_tiny_model

_KEYWORDS = {"good": ["wonderful", "superb", "brilliant"], "bad": ["awful", "dreadful", "boring"],
             "odd": ["strange", "weird", "curious"]}
_FILLER = ["the", "story", "of", "a", "day", "in", "town", "and", "what", "people", "said", "about", "it", "later"]

#: build_tiny_model's widths: hidden state and FFN
WIDTHS = {"hidden": 32, "ffn": 48}
#: the three kinds of candidate a fitted model can have chosen (stc.aggregate)
READOUT_KINDS = ("sparse", "dense", "hybrid")

FAST = dict(poolings=("mean", "max"), etas=(0.2, 0.8), probe_Cs=(0.1, 1.0), final_Cs=(0.1, 1.0),
            show_progress_bar=False, device="cpu", probe_solver="saga", n_jobs=1)

#: Texts that are not in the training set; the last is longer than the tiny models' 128-token limit (truncated).
NEW_TEXTS = ["what people said about the wonderful day", "a dreadful story in town", "a weird and curious day",
             "the", "superb! " + "and the story of a day in town " * 30]


def planted(n_classes: int, per_class: int = 16, seed: int = 0) -> tuple[list[str], list[str]]:
    """Short texts whose label is carried by one keyword among filler words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for label in list(_KEYWORDS)[:n_classes]:
        for _ in range(per_class):
            words = rng.sample(_FILLER, rng.randint(3, 8))
            words.insert(rng.randint(0, len(words)), rng.choice(_KEYWORDS[label]))
            texts.append(" ".join(words))
            labels.append(label)
    return texts, labels


def save_tiny(family: str, directory: Path, tokenizer) -> str:
    """A tiny random model of ``family`` with MiniLM's tokenizer, saved as an ordinary model directory.

    It is saved twice: ``AutoModel`` adds a randomly initialised pooler to BERT and RoBERTa models saved without
    one, so the second save makes every later load give the same weights (and the same weights hash)."""
    from transformers import AutoModel

    build_tiny_model(family, len(tokenizer)).save_pretrained(directory)
    AutoModel.from_pretrained(directory).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def fit_tiny(model_dir: str, store_dir, n_classes: int = 2, **params) -> stc.STCClassifier:
    texts, labels = planted(n_classes)
    return stc.STCClassifier(model_dir, store_dir=str(store_dir), **{**FAST, **params}).fit(texts, labels)


def keep_every_site(clf: stc.STCClassifier, layers: int, columns: int = 3, seed: int = 0) -> stc.STCClassifier:
    """Make ``clf`` keep a few neurons of every (representation, layer <= ``layers``, pooling), hidden layer 0 and
    all four poolings included, and refit its final classifier on them: one model then exercises every site."""
    rng = np.random.default_rng(seed)
    kept = {}
    for representation, first in (("hidden", 0), ("ffn", 1)):
        for layer in range(first, layers + 1):
            for pooling in ("mean", "max", "first", "last"):
                kept[f"{representation}.L{layer}.{pooling}"] = np.sort(rng.choice(WIDTHS[representation], columns,
                                                                                  replace=False))
    return _read_columns(clf, kept, {**clf.readout_.configuration, "exit_layer": layers}, C=1.0)


def with_readout(clf: stc.STCClassifier, kind: str, seed: int = 0) -> stc.STCClassifier:
    """A copy of ``clf`` (a tiny model fitted with cross-validation, whose search scores candidates of every kind)
    that reads the best candidate of ``kind`` its search scored, whatever the search chose, its head refitted: a
    fitted model of each kind, deterministically.

    The configuration is that search row. A dense part is every neuron of the row's dense key, as the fit reads it;
    the probes are not saved, so a sparse part is two seeded neurons of each array of the row's representations x
    poolings up to its exit layer (hidden layer 0 included), as the fit's kept columns are laid out."""
    rows = [row for row in clf.search_results_ if row.get("readout", "sparse") == kind]
    assert rows, f"the search scored no {kind} candidate (fit with cv, and hidden among the representations)"
    row = max(rows, key=lambda r: r["val_score"])  # the first of the best: the table's order is fixed
    rng = np.random.default_rng(seed)
    kept = {}
    if kind != "dense":
        for representation in row["representations"].split("+"):
            for layer in range(0 if representation == "hidden" else 1, row["exit_layer"] + 1):
                for pooling in row["poolings"].split("+"):
                    kept[f"{representation}.L{layer}.{pooling}"] = np.sort(rng.choice(WIDTHS[representation], 2,
                                                                                      replace=False))
    if kind != "sparse":
        kept[row["dense_key"]] = np.arange(WIDTHS["hidden"], dtype=np.int64)
    kept = {key: kept[key] for key in sorted(kept, key=parse_key)}
    clf = _read_columns(copy.deepcopy(clf), kept, {**row, "n_features": sum(map(len, kept.values()))},
                        C=row["C"])
    clf.readout_ = replace(clf.readout_, scores=replace(clf.readout_.scores, validation=row["val_score"],
                                                        validation_se=row["score_se"]))
    return clf


def _read_columns(clf: stc.STCClassifier, kept: dict, configuration: dict, C: float) -> stc.STCClassifier:
    """Make ``clf`` read ``kept`` under ``configuration``, its final classifier refitted (at ``C``) on those
    features of the planted training texts."""
    texts, labels = planted(len(clf.classes_))
    readout = clf.readout_
    n_features, n_rows = sum(len(c) for c in kept.values()), readout.head.coef.shape[0]
    # a readout of the new columns, with a placeholder head until the head is refitted on their features
    placeholder = LinearHead(classes=clf.classes_, mean=np.zeros(n_features), scale=np.ones(n_features),
                             coef=np.zeros((n_rows, n_features)), intercept=np.zeros(n_rows))
    clf.readout_ = replace(readout, kept_columns=kept, configuration=configuration, head=placeholder)
    pipeline = make_final_classifier(C, 0).fit(clf.transform(texts), np.searchsorted(clf.classes_, labels))
    clf.readout_ = replace(clf.readout_, head=LinearHead.from_pipeline(pipeline, clf.classes_))
    return clf
