"""Fitted STC models on the tiny random backbones of tests/conftest.py, shared by the export and serving tests."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np

import stc
from stc.aggregate import make_final_classifier

from .conftest import build_tiny_model

_KEYWORDS = {"good": ["wonderful", "superb", "brilliant"], "bad": ["awful", "dreadful", "boring"],
             "odd": ["strange", "weird", "curious"]}
_FILLER = ["the", "story", "of", "a", "day", "in", "town", "and", "what", "people", "said", "about", "it", "later"]

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
    hidden, ffn = 32, 48  # build_tiny_model's widths
    kept = {}
    for representation, width, first in (("hidden", hidden, 0), ("ffn", ffn, 1)):
        for layer in range(first, layers + 1):
            for pooling in ("mean", "max", "first", "last"):
                kept[f"{representation}.L{layer}.{pooling}"] = np.sort(rng.choice(width, columns, replace=False))
    texts, labels = planted(len(clf.classes_))
    readout = clf.readout_
    n_features, n_rows = sum(len(c) for c in kept.values()), readout.coef.shape[0]
    # a readout of the new columns, with a placeholder head until the head is refitted on their features
    clf.readout_ = replace(readout, kept_columns=kept, configuration={**readout.configuration, "exit_layer": layers},
                           mean=np.zeros(n_features), scale=np.ones(n_features), coef=np.zeros((n_rows, n_features)),
                           intercept=np.zeros(n_rows))
    head = make_final_classifier(1.0, 0).fit(clf.transform(texts), np.searchsorted(clf.classes_, labels))
    clf.readout_ = replace(clf.readout_, mean=head[0].mean_, scale=head[0].scale_, coef=head[-1].coef_,
                           intercept=head[-1].intercept_)
    return clf
