"""What the tests share, in one place (scikit-learn's ``utils/_testing.py`` is the model): the tiny random models of
each family and the function that saves one as a model directory, the planted text problem with a known answer,
fitted tiny STC models, and the small settings that keep a fit to a second or two.

Test modules import from here and never from one another; the fixtures built from these live in ``conftest.py``.
"""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

import stc
from stc.aggregate import READOUT_KINDS  # noqa: F401 - the kinds a fitted model can have chosen, for tests
from stc.head import LinearHead, make_final_classifier
from stc.extract import parse_key

# --- tiny models -----------------------------------------------------------------------------------------------------

FAMILIES = ("gpt2", "bert", "distilbert", "roberta", "llama")
#: the tiny models' depth and widths (hidden state, FFN)
NUM_LAYERS = 3
WIDTHS = {"hidden": 32, "ffn": 48}
#: the tokens a tiny model reads (its tokenizer's model_max_length; it has 256 positions)
MAX_LENGTH = 128


def tiny_tokenizer():
    """MiniLM's tokenizer (a real vocabulary), limited to the tiny models' ``MAX_LENGTH`` tokens; a fresh copy."""
    from transformers import AutoTokenizer

    from stc.backbone import resolve_model_name

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name("minilm")[0])
    tokenizer.model_max_length = MAX_LENGTH
    return tokenizer


def tiny_model(family: str, vocab_size: int, seed: int = 0, *, causal_lm: bool = False):
    """A ``NUM_LAYERS``-layer model of ``family`` with small random weights (``WIDTHS``), in eval mode.

    ``causal_lm``: the language-model class of the family (GPT-2 and Llama), for the baselines that generate."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    layers, hidden, ffn = NUM_LAYERS, WIDTHS["hidden"], WIDTHS["ffn"]
    if causal_lm and family not in ("gpt2", "llama"):
        raise ValueError(f"no causal LM of family {family!r} here")
    if family == "gpt2":
        config = tf.GPT2Config(n_layer=layers, n_embd=hidden, n_head=2, n_inner=ffn, vocab_size=vocab_size,
                               n_positions=256)
        model = tf.GPT2LMHeadModel(config) if causal_lm else tf.GPT2Model(config)
    elif family == "bert":
        model = tf.BertModel(tf.BertConfig(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=ffn,
                                           num_attention_heads=2, vocab_size=vocab_size, max_position_embeddings=256),
                             add_pooling_layer=False)
    elif family == "distilbert":
        model = tf.DistilBertModel(tf.DistilBertConfig(n_layers=layers, dim=hidden, hidden_dim=ffn, n_heads=2,
                                                       vocab_size=vocab_size, max_position_embeddings=256))
    elif family == "roberta":
        model = tf.RobertaModel(tf.RobertaConfig(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=ffn,
                                                 num_attention_heads=2, vocab_size=vocab_size,
                                                 max_position_embeddings=258, pad_token_id=0),
                                add_pooling_layer=False)
    elif family == "llama":
        config = tf.LlamaConfig(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=ffn,
                                num_attention_heads=2, num_key_value_heads=2, vocab_size=vocab_size,
                                max_position_embeddings=256, pad_token_id=0)
        model = tf.LlamaForCausalLM(config) if causal_lm else tf.LlamaModel(config)
    else:
        raise ValueError(f"unknown family {family!r}")
    return model.eval()


def save_tiny(directory, family: str = "bert", seed: int = 0, *, causal_lm: bool = False, tokenizer=None) -> str:
    """A tiny random model (``tiny_model``) with MiniLM's tokenizer, saved as an ordinary model directory that
    loads offline; its path.

    It is saved twice: ``AutoModel`` adds a randomly initialised pooler to BERT and RoBERTa models saved without
    one, so the second save makes every later load give the same weights (and the same weights hash)."""
    from transformers import AutoModel

    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    tiny_model(family, len(tokenizer), seed, causal_lm=causal_lm).save_pretrained(directory)
    if not causal_lm:
        AutoModel.from_pretrained(directory).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


# --- the planted problem ---------------------------------------------------------------------------------------------

#: label -> its keywords; a planted text holds one keyword of its label among filler words
KEYWORDS = {"good": ("wonderful", "superb", "brilliant"), "bad": ("awful", "dreadful", "boring"),
            "odd": ("strange", "weird", "curious")}
FILLER = ("the", "story", "of", "a", "day", "in", "town", "and", "what", "people", "said", "about", "it", "later")

#: Texts that are not in the training set; the last is longer than the tiny models' ``MAX_LENGTH`` (truncated).
NEW_TEXTS = ["what people said about the wonderful day", "a dreadful story in town", "a weird and curious day",
             "the", "superb! " + "and the story of a day in town " * 30]

#: the figures of a report, each a PNG with its JSON
FIGURES = ("layer_curve", "kept_per_layer", "kept_vs_eta", "metric_vs_eta", "metric_vs_exit", "confusion_matrix",
           "reliability", "top_neurons")


def planted_texts(n_classes: int = 2, per_class: int = 16, seed: int = 0, *,
                  shuffle: bool = False) -> tuple[list[str], list[str]]:
    """(texts, labels): short texts whose label (the first ``n_classes`` of ``KEYWORDS``) is carried by one of its
    keywords at a random place among 3 to 8 filler words; class by class, or shuffled."""
    rng = random.Random(seed)
    texts, labels = [], []
    for label in list(KEYWORDS)[:n_classes]:
        for _ in range(per_class):
            words = rng.sample(FILLER, rng.randint(3, 8))
            words.insert(rng.randint(0, len(words)), rng.choice(KEYWORDS[label]))
            texts.append(" ".join(words))
            labels.append(label)
    if shuffle:
        order = list(range(len(texts)))
        rng.shuffle(order)
        texts, labels = [texts[i] for i in order], [labels[i] for i in order]
    return texts, labels


def planted_label_sets(n_texts: int = 60, seed: int = 0) -> tuple[list[str], list[tuple[str, ...]]]:
    """(texts, label sets): short texts carrying a keyword of each of 0 to 3 of the ``KEYWORDS`` labels among
    filler words; a text's label set is the labels whose keyword it holds (sorted), every label on about half."""
    rng = random.Random(seed)
    texts, label_sets = [], []
    for _ in range(n_texts):
        labels = tuple(sorted(label for label in KEYWORDS if rng.random() < 0.5))
        words = rng.sample(FILLER, rng.randint(3, 8))
        for label in labels:
            words.insert(rng.randint(0, len(words)), rng.choice(KEYWORDS[label]))
        texts.append(" ".join(words))
        label_sets.append(labels)
    return texts, label_sets


# --- fitted tiny models ----------------------------------------------------------------------------------------------

#: (no MLP stage: it is tested where it is the point, tests/test_mlp_head.py, test_selection.py and test_export.py,
#: and the real-sentence fit of test_classifier.py; elsewhere it would add a third of every tiny search's time)
FAST = dict(poolings=("mean", "max"), etas=(0.2, 0.8), probe_Cs=(0.1, 1.0), final_Cs=(0.1, 1.0),
            show_progress_bar=False, device="cpu", probe_solver="saga", n_jobs=1, mlp_head=False)
#: A sparse model to explain: cv=None, since explanations are of a given sparse model, not of how it was chosen (on
#: 72 planted texts the cross-validated search may prefer a dense readout, with nothing left to explain by name).
SPARSE_FIT = dict(per_class=24, cv=None)


def fit_tiny(model_dir: str, store_dir, n_classes: int = 2, *, per_class: int = 16, **params) -> stc.STCClassifier:
    """An STC model with the ``FAST`` settings (or ``params``) fitted on ``planted_texts(n_classes, per_class)``."""
    texts, labels = planted_texts(n_classes, per_class)
    return stc.STCClassifier(model_dir, store_dir=str(store_dir), **{**FAST, **params}).fit(texts, labels)


def planted_dataset(n_classes: int):
    """A ``TextDataset`` whose training texts are those ``fit_tiny(..., **SPARSE_FIT)`` fits on, with fresh
    validation and test texts."""
    from stc.data import Split, TextDataset

    train, validation, test = (planted_texts(n_classes, n, seed) for n, seed in
                               ((SPARSE_FIT["per_class"], 0), (6, 2), (10, 1)))
    return TextDataset(f"planted-{n_classes}", Split(*train), Split(*validation), Split(*test), "accuracy",
                       "planted keywords among filler words")


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
    texts, labels = planted_texts(len(clf.classes_))
    readout = clf.readout_
    n_features, n_rows = sum(len(c) for c in kept.values()), readout.head.coef.shape[0]
    # a readout of the new columns, with a placeholder head until the head is refitted on their features
    placeholder = LinearHead(classes=clf.classes_, mean=np.zeros(n_features), scale=np.ones(n_features),
                             coef=np.zeros((n_rows, n_features)), intercept=np.zeros(n_rows))
    clf.readout_ = replace(readout, kept_columns=kept, configuration=configuration, head=placeholder)
    pipeline = make_final_classifier(C, 0).fit(clf.transform(texts), np.searchsorted(clf.classes_, labels))
    clf.readout_ = replace(clf.readout_, head=LinearHead.from_pipeline(pipeline, clf.classes_))
    return clf


# --- the two-class sentences of the input and process tests ---------------------------------------------------------

TEXTS = [f"a good movie, number {i}, great fun" for i in range(20)] + \
        [f"a bad film, number {i}, awful and boring" for i in range(20)]
LABELS = ["pos"] * 20 + ["neg"] * 20


def small_params(**overrides) -> dict:
    """STCClassifier settings of a one-point search (one representation, pooling, η and C)."""
    return {**dict(representations=("hidden",), poolings=("mean",), etas=(0.5,), probe_Cs=(0.1,), final_Cs=(1.0,),
                   show_progress_bar=False), **overrides}


def quiet_env(**extra) -> dict:
    """The environment for a child process: one thread each, since CPUs are shared (2 threads thrash under load)."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **extra)


# --- data files ------------------------------------------------------------------------------------------------------

def write_table(path: Path, columns: dict[str, list]) -> Path:
    """Write ``columns`` to ``path`` in the format its suffix names."""
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    if path.suffix in (".csv", ".tsv"):
        import csv

        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), delimiter="," if path.suffix == ".csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix in (".jsonl", ".json"):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(columns), path)
    return path
