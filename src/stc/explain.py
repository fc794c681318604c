"""Why a fitted STC model decided what it did: each kept neuron's signed share of the decision.

The final classifier is a logistic regression on standardised neuron activations, so its decision for class row c
is ``intercept[c] + sum_j coef[c, j] * (x_j - mean_j) / scale_j``: every term is one neuron's contribution, and the
terms plus the intercept are the decision, exactly. For a max-pooled neuron the token where it peaked says what in
the text it responded to; finding it needs the token-level activations, which one hooked forward pass gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import check_inputs
from .backbone import Backbone
from .extract import check_layers, parse_key, pool_tokens, token_activations_of_windows, tokenize
from .readout import Readout

__all__ = ["TokenActivations", "token_activations", "pooled_activations", "peak_token", "explain_prediction",
           "neuron_parts"]


@dataclass
class TokenActivations:
    """Token-level activations of selected neurons for one text, every window's tokens one after the other."""

    text: str
    tokens: list[str]  # token strings, as the tokenizer spells them
    windows: list[int]  # which window each token comes from
    positions: list[int]  # its position inside that window
    spans: list[tuple[int, int] | None]  # character span in the text; None for special tokens or slow tokenizers
    values: dict[str, np.ndarray]  # key -> (n_tokens, n_columns) float32, columns as requested


def token_activations(backbone: Backbone, text: str, columns: Mapping[str, np.ndarray], *,
                      max_length: int | None = None, windows: bool = False,
                      window_overlap: int = 64) -> TokenActivations:
    """One forward pass over one text (all its windows): the token-level activations of ``columns`` per key, read
    at the sites extraction reads (``stc.extract.hooked_forward``)."""
    parsed = {key: parse_key(key) for key in columns}
    if not parsed:
        raise ValueError("columns is empty: name at least one key")
    check_layers(backbone, parsed)
    tokens = tokenize(backbone, [text], max_length=max_length, windows=windows, window_overlap=window_overlap)
    lengths = [len(ids) for ids in tokens.input_ids]
    captured = token_activations_of_windows(backbone, tokens, {(r, layer) for r, layer, _ in parsed.values()})
    values = {}
    for key, (representation, layer, _) in parsed.items():
        site = captured[(representation, layer)]
        index = torch.as_tensor(np.asarray(columns[key], dtype=np.int64), device=site.device)
        values[key] = np.concatenate([site[row, :length][:, index].cpu().numpy()
                                      for row, length in enumerate(lengths)]).astype(np.float32)
    flat_ids = [token for row_ids in tokens.input_ids for token in row_ids]
    return TokenActivations(
        text=text, tokens=list(backbone.tokenizer.convert_ids_to_tokens(flat_ids)),
        windows=[w for w, length in enumerate(lengths) for _ in range(length)],
        positions=[p for length in lengths for p in range(length)],
        spans=_character_spans(backbone, text, tokens.input_ids, max_length or backbone.max_length, windows,
                               window_overlap),
        values=values)


def _character_spans(backbone, text, input_ids, max_length, windows, window_overlap):
    """Each token's (start, end) in the text, from the fast tokenizer's offsets; None where there is none."""
    tokenizer = backbone.tokenizer
    n_tokens = sum(len(ids) for ids in input_ids)
    if not getattr(tokenizer, "is_fast", False) or isinstance(text, tuple):  # a pair's offsets are in two texts
        return [None] * n_tokens
    encoded = tokenizer([text], truncation=True, max_length=max_length, padding=False,
                        return_overflowing_tokens=windows, stride=window_overlap if windows else 0,
                        return_offsets_mapping=True, return_attention_mask=False)
    if [list(ids) for ids in encoded["input_ids"]] != input_ids:  # not the tokenisation extraction used
        return [None] * n_tokens
    return [(int(start), int(end)) if end > start else None
            for offsets in encoded["offset_mapping"] for start, end in offsets]


def pooled_activations(activations: TokenActivations, key: str) -> np.ndarray:
    """The pooled value of each requested neuron of ``key``, as extraction computes it.

    Windows are pooled as one sequence: the sum and the maximum run over every window's tokens, the first token is
    the first window's, the last the last window's, which is exactly how extraction merges windows.
    """
    values = torch.from_numpy(activations.values[key])[None]
    mask = torch.ones(values.shape[:2], dtype=torch.long)
    return pool_tokens(values, mask, parse_key(key)[2])[0].numpy()


def peak_token(activations: TokenActivations, key: str, column: int) -> dict:
    """Where the ``column``-th requested neuron of ``key`` peaked: token string, window, position, character span."""
    where = int(np.argmax(activations.values[key][:, column]))
    span = activations.spans[where]
    return {"token": activations.tokens[where], "window": activations.windows[where],
            "position": activations.positions[where], "span": list(span) if span else None,
            "text": activations.text[span[0]:span[1]] if span else None,
            "activation": float(activations.values[key][where, column])}


def neuron_parts(name: str) -> dict:
    """The parts of a neuron name such as ``ffn.L3.max.1021``: key, representation, layer, pooling, index."""
    key, _, index = name.rpartition(".")
    representation, layer, pooling = parse_key(key)
    return {"neuron": name, "key": key, "representation": representation, "layer": layer, "pooling": pooling,
            "index": int(index)}


def explain_prediction(readout: Readout, backbone: Backbone, text: str, *, top_k: int = 10) -> dict:
    """The prediction of a fitted model (its ``readout``, run on ``backbone``) for one text and the ``top_k``
    neurons that pushed its decision most, as a JSON-able dict.

    The text's features are extracted as ``predict_proba`` extracts them (``Readout.features``), and everything
    but the neurons' names and peaks is the head's (``LinearHead.explain``): ``probabilities`` and ``decision``
    are bit for bit ``predict_proba([text])``'s and ``decision_function([text])``'s; the ``contributions`` of the
    explained row (class 1's decision for two classes, the predicted class's otherwise) are ``weight *
    standardised activation``, and with ``intercept`` they sum to ``decision`` for that row (``all_contributions_sum``
    carries that sum over every neuron for each row). Each neuron is named by its parts (``neuron_parts``); for a
    max-pooled one, a token-level pass over the text finds the token where it peaked.
    """
    pairs = readout.extraction.pairs
    if not isinstance(text, tuple if pairs else str):
        raise TypeError(f"text must be {'a (text_a, text_b) tuple' if pairs else 'a string'}, got "
                        f"{type(text).__name__}")
    text = check_inputs([text], "text", pairs=pairs)[0]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    extraction = readout.extraction
    features = readout.features(backbone, [text])[0]
    explanation = readout.head.explain(features, readout.neuron_names, top_k=top_k)
    # a multi-label head explains each predicted label with its own contributions
    entries = ([entry for label in explanation["explained"].values() for entry in label["contributions"]]
               if "explained" in explanation else explanation["contributions"])
    for entry in entries:
        entry.update(neuron_parts(entry["neuron"]))
    peaked = {}  # key -> the max-pooled neurons among the top ones
    for entry in entries:
        if entry["pooling"] == "max":
            peaked.setdefault(entry["key"], []).append(entry["index"])
    if peaked:
        columns = {key: np.asarray(sorted(set(indices)), dtype=np.int64) for key, indices in peaked.items()}
        activations = token_activations(backbone, text, columns, max_length=extraction.max_length,
                                        windows=extraction.windows, window_overlap=extraction.window_overlap)
        for entry in entries:
            if entry["pooling"] == "max":
                column = int(np.searchsorted(columns[entry["key"]], entry["index"]))
                entry["peak"] = peak_token(activations, entry["key"], column)
    tokens = tokenize(backbone, [text], max_length=extraction.max_length, windows=extraction.windows,
                      window_overlap=extraction.window_overlap)
    return {"text": text, **explanation, "n_tokens": sum(len(ids) for ids in tokens.input_ids)}
