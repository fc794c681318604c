"""The numbers behind every figure of the report, as plain JSON-able dicts, from a fitted model and its data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix

from .._estimator import plain_label
from .._metrics import score
from ..calibration import expected_calibration_error, log_loss, probabilities, reliability_table
from ..explain import neuron_parts, peak_token, token_activations
from ..extract import extract_features, parse_key
from ..readout import chosen_readout

__all__ = ["layer_curve", "kept_per_layer", "eta_curves", "exit_curve", "configuration_summary",
           "confusion", "reliability", "top_neurons", "neuron_strength", "neuron_texts", "embedding_baseline"]

#: equal-width confidence bins of the reliability diagram, as ``stc evaluate``'s ECE
RELIABILITY_BINS = 15


def _C(value) -> float | None:
    """A C as a float; None where the head chose its own penalty (label-set models saved before its C was searched)."""
    return None if value is None else float(value)


def layer_curve(clf, embedding: dict | None) -> dict:
    """Each probe's validation score by layer, one series per representation × pooling."""
    series: dict[tuple[str, str], dict] = {}
    for row in sorted(clf.probe_scores_, key=lambda r: (r["representation"], r["pooling"], r["layer"])):
        entry = series.setdefault((row["representation"], row["pooling"]), {
            "representation": row["representation"], "pooling": row["pooling"], "layers": [], "val_scores": [],
            "Cs": []})
        entry["layers"].append(int(row["layer"]))
        entry["val_scores"].append(float(row["val_score"]))
        entry["Cs"].append(_C(row["C"]))
    best = max(clf.probe_scores_, key=lambda r: r["val_score"])
    return {"metric": clf.metric_, "num_layers": int(clf.backbone_["num_layers"]), "series": list(series.values()),
            "best_probe": {"key": best["key"], "val_score": float(best["val_score"])},
            "exit_layer": int(clf.exit_layer_), "embedding": embedding}


def _sparse_stage_two(clf) -> list[dict]:
    """The search's stage-2 rows of sparse candidates: the sparse leader at every exit layer and C (the dense and
    hybrid rows of stage 2 read other columns, so they are no point of these curves)."""
    return [r for r in clf.search_results_ if r["stage"] == 2 and r.get("readout", "sparse") == "sparse"]


def kept_per_layer(clf) -> dict:
    """Neurons kept per layer by the chosen readout: exactly, per key, from the model's kept columns (up to the exit
    layer), and for every layer from the stage-2 search rows of the sparse leader (cumulative feature counts by exit
    layer; its η, representations and poolings are those of the rows, which a dense model's are not)."""
    config, chosen = clf.configuration_, chosen_readout(clf.configuration_)
    rows = [{"key": key, "representation": parse_key(key)[0], "layer": parse_key(key)[1],
             "pooling": parse_key(key)[2], "kept": int(len(columns))} for key, columns in clf.kept_columns_.items()]
    by_exit = {}
    stage_two = _sparse_stage_two(clf)
    for row in stage_two:
        by_exit[int(row["exit_layer"])] = int(row["n_features"])
    layers = sorted(by_exit)
    per_layer_all = [{"layer": layer, "kept": by_exit[layer] - (by_exit[layers[i - 1]] if i else 0)}
                     for i, layer in enumerate(layers)]
    leader = stage_two[0] if stage_two else {}
    return {"readout": chosen.kind, "eta": chosen.eta, "dense_key": chosen.dense_key, "short": chosen.short(),
            "description": chosen.describe(), "exit_layer": int(clf.exit_layer_),
            "representations": config["representations"], "poolings": config["poolings"], "by_key": rows,
            "by_layer_all_depths": per_layer_all,
            "all_depths": {"eta": leader.get("eta"), "representations": leader.get("representations"),
                           "poolings": leader.get("poolings")},
            "note": "by_key: the kept columns of the saved model (layers up to the exit layer). by_layer_all_depths: "
                    "differences of the stage-2 search's feature counts of the sparse leader by exit layer (layers "
                    "1..L; the embedding layer 0, when kept, is counted in layer 1), at the η, representations and "
                    "poolings of all_depths."}


def eta_curves(clf) -> dict:
    """Stage 1 of the search: validation score and number of kept neurons against η at full depth, per
    representation set × pooling set; per-layer counts across η when the model recorded them."""
    series: dict[tuple[str, str], dict] = {}
    for row in clf.search_results_:
        if row["stage"] != 1 or row["eta"] is None:  # a dense readout (a whole layer) has no η
            continue
        entry = series.setdefault((row["representations"], row["poolings"]), {
            "representations": row["representations"], "poolings": row["poolings"], "etas": [], "val_scores": [],
            "n_features": []})
        entry["etas"].append(float(row["eta"]))
        entry["val_scores"].append(float(row["val_score"]))
        entry["n_features"].append(int(row["n_features"]))
    for entry in series.values():
        order = np.argsort(entry["etas"])
        for field in ("etas", "val_scores", "n_features"):
            entry[field] = [entry[field][i] for i in order]
    config, chosen = clf.configuration_, chosen_readout(clf.configuration_)
    stage1 = [r for r in clf.search_results_ if r["stage"] == 1 and r["eta"] is not None]
    C_stage1 = _C(stage1[0]["C"]) if stage1 else None
    if chosen.eta is None:  # dense: no η was chosen, no neurons were kept by one
        per_layer = None
        note = (f"The chosen readout is dense (every neuron of {chosen.dense_key}): it keeps no neurons by η. The "
                f"curves are the sparse candidates the search tried beside it." if series else
                f"The chosen readout is dense (every neuron of {chosen.dense_key}) and the search scored no sparse "
                f"candidate: there is nothing to draw across η.")
    else:
        per_layer = _kept_by_layer_and_eta(clf)
        note = None if per_layer else ("the model does not record per-layer kept counts for every η (the probe "
                                       "weights are not saved), so only the totals at full depth are shown "
                                       "across η.")
    # a dense readout's representations and poolings are its array's, not a sparse set: none is the chosen set
    sets = ({"representations": None, "poolings": None} if chosen.eta is None else
            {"representations": config["representations"], "poolings": config["poolings"]})
    return {"metric": clf.metric_, "C": C_stage1, "series": list(series.values()),
            "chosen": {**sets, "eta": chosen.eta, "readout": chosen.kind},
            "kept_per_layer_by_eta": per_layer, "note": note}


def _kept_by_layer_and_eta(clf) -> dict | None:
    """Layers × η kept counts of the chosen representations and poolings, from ``kept_counts_`` when the model
    records it (``{"etas": [...], "counts": {key: [count per eta]}}``); None otherwise."""
    recorded = getattr(clf, "kept_counts_", None)
    if not recorded:
        return None
    config = clf.configuration_
    representations, poolings = config["representations"].split("+"), config["poolings"].split("+")
    by_layer: dict[int, np.ndarray] = {}
    for key, counts in recorded["counts"].items():
        representation, layer, pooling = parse_key(key)
        if representation in representations and pooling in poolings:
            by_layer[layer] = by_layer.get(layer, 0) + np.asarray(counts, dtype=np.int64)
    layers = sorted(by_layer)
    return {"etas": [float(e) for e in recorded["etas"]], "layers": layers,
            "counts": [by_layer[layer].tolist() for layer in layers],
            "representations": config["representations"], "poolings": config["poolings"]}


def exit_curve(clf) -> dict:
    """Stage 2 of the search: validation score by exit layer of the sparse leader for each C; the dense and hybrid
    candidates of stage 2 as points of their own; the chosen point marked."""
    by_C: dict[float, dict] = {}
    for row in sorted(_sparse_stage_two(clf), key=lambda r: r["exit_layer"]):
        entry = by_C.setdefault(_C(row["C"]), {"C": _C(row["C"]), "exit_layers": [], "val_scores": [],
                                                  "n_features": []})
        entry["exit_layers"].append(int(row["exit_layer"]))
        entry["val_scores"].append(float(row["val_score"]))
        entry["n_features"].append(int(row["n_features"]))
    others = [{"readout": r["readout"], "dense_key": r.get("dense_key"), "C": _C(r["C"]),
               "exit_layer": int(r["exit_layer"]), "val_score": float(r["val_score"]),
               "n_features": int(r["n_features"])}
              for r in clf.search_results_ if r["stage"] == 2 and r.get("readout", "sparse") != "sparse"]
    config, chosen = clf.configuration_, chosen_readout(clf.configuration_)
    return {"metric": clf.metric_, "num_layers": int(clf.backbone_["num_layers"]), "series": list(by_C.values()),
            "other_readouts": others,
            "chosen": {"exit_layer": int(config["exit_layer"]), "C": _C(config["C"]),
                       "val_score": float(config["val_score"]), "n_features": int(config["n_features"]),
                       "readout": chosen.kind}}


def configuration_summary(clf, test_score: float | None, n_test: int | None, embedding: dict | None) -> dict:
    config, chosen = clf.configuration_, chosen_readout(clf.configuration_)
    return {"backbone": clf.backbone_.get("name"), "num_layers": int(clf.backbone_["num_layers"]),
            "classes": [plain_label(c) for c in clf.classes_], "metric": clf.metric_,
            "representations": config["representations"], "poolings": config["poolings"],
            "eta": chosen.eta, "C": _C(config["C"]), "readout": chosen.kind, "dense_key": chosen.dense_key,
            "readout_description": chosen.describe(), "n_features": int(clf.n_features_),
            "exit_layer": int(clf.exit_layer_), "val_score": float(clf.val_score_),
            "expected_score": getattr(clf, "expected_score_", None),
            "expected_score_se": getattr(clf, "expected_score_se_", None),
            "temperature": float(getattr(clf, "temperature_", 1.0)),
            "test_score": test_score, "n_test": n_test,
            "embedding_val_score": embedding["val_score"] if embedding else None}


def confusion(clf, decisions: np.ndarray, labels: Sequence) -> tuple[dict, float]:
    """Confusion matrix on a labelled split (rows: true label, columns: predicted) and the metric there, from the
    model's decision values on it (the label is the probabilities' argmax, as ``predict``'s)."""
    predicted = clf.classes_[probabilities(decisions).argmax(axis=1)]
    truth = np.asarray(labels)
    matrix = confusion_matrix(truth, predicted, labels=clf.classes_)
    test_score = score(truth, predicted, clf.metric_)
    return {"classes": [plain_label(c) for c in clf.classes_], "matrix": matrix.tolist(), "n": int(len(truth)),
            "metric": clf.metric_, "score": float(test_score)}, float(test_score)


def reliability(decisions: np.ndarray, codes: np.ndarray, temperature: float,
                n_bins: int = RELIABILITY_BINS) -> dict:
    """Reliability diagram data of one labelled split: per confidence bin the mean confidence and the accuracy,
    with ECE and log loss, of the model's probabilities (logits divided by its ``temperature``) and, when that is
    not 1, of the uncalibrated ones (T = 1) before them. ``decisions``: the model's decision values on the split;
    ``codes``: the true class codes (indices into ``classes_``)."""
    codes = np.asarray(codes)
    settings = [("before calibration", 1.0), ("after calibration", temperature)] if temperature != 1.0 \
        else [("the model's probabilities", 1.0)]
    curves = []
    for name, value in settings:
        proba = probabilities(decisions, value)
        curves.append({"name": name, "temperature": float(value),
                       "accuracy": float((proba.argmax(axis=1) == codes).mean()),
                       "ece": expected_calibration_error(proba, codes, n_bins),
                       "log_loss": log_loss(proba, codes), "bins": reliability_table(proba, codes, n_bins)})
    return {"n": int(len(codes)), "n_bins": n_bins, "n_classes": int(proba.shape[1]),
            "temperature": float(temperature), "curves": curves}


def embedding_baseline(clf, train_texts, train_labels, val_texts, val_labels) -> dict:
    """Fit the last-layer sentence-embedding baseline on the same train/validation texts and score it."""
    from ..baselines import EmbeddingClassifier

    baseline = EmbeddingClassifier(model=clf.model, metric=clf.metric_, validation_size=clf.validation_size,
                                   max_length=clf.max_length, windows=clf.windows,
                                   window_overlap=clf.window_overlap, token_budget=clf.token_budget,
                                   device=clf.device, dtype=clf.dtype, random_state=clf.random_state,
                                   show_progress_bar=clf.show_progress_bar)
    baseline.fit(train_texts, train_labels, X_val=val_texts, y_val=val_labels)
    return {"val_score": float(baseline.val_score_), "layer": int(baseline.exit_layer_),
            "pooling": baseline.pooling_, "C": _C(baseline.C_), "n_features": int(baseline.n_features_),
            "source": f"fitted here: logistic regression on the last layer's {baseline.pooling_}-pooled hidden "
                      f"state (the model's own sentence embedding), same train/validation texts, C={baseline.C_}"}


def neuron_strength(clf) -> np.ndarray:
    """Each kept neuron's strength in the final classifier: the root of its squared weights summed over the rows
    (classes; for a multi-label model, labels) of the head, on standardised activations (an MLP head's connection
    weights: ``stc.heads.MLPHead.feature_weights``)."""
    weights = clf.readout_.head.feature_weights()
    return np.sqrt((weights ** 2).sum(axis=0))


def _label_value(value):
    """A training text's label as plain JSON: one label, or (multi-label) the list of its labels."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain_label(label) for label in value]
    return plain_label(value)


def neuron_texts(clf, features: Sequence[int], train_texts: Sequence[str], train_labels: Sequence, *,
                 texts_per_neuron: int = 3, show_progress_bar: bool = False) -> dict[int, list[dict]]:
    """Feature -> the ``texts_per_neuron`` training texts that activate that kept neuron most (text, label,
    activation; for max-pooled neurons the token where it peaked), from one pass over the training texts."""
    readout = clf.readout_
    names = readout.neuron_names
    parts = {int(f): neuron_parts(names[f]) for f in features}
    columns: dict[str, set[int]] = {}
    for part in parts.values():
        columns.setdefault(part["key"], set()).add(part["index"])
    columns_arrays = {key: np.asarray(sorted(indices), dtype=np.int64) for key, indices in columns.items()}
    keys = sorted(columns_arrays, key=parse_key)
    extraction = readout.extraction
    backbone = readout.load_backbone(model=clf.model, device=clf.device, dtype=clf.dtype,
                                     trust_remote_code=clf.trust_remote_code, check=False)
    options = dict(max_length=extraction.max_length, windows=extraction.windows,
                   window_overlap=extraction.window_overlap)
    pooled = extract_features(backbone, list(train_texts), keys, columns=columns_arrays,
                              token_budget=clf.token_budget, show_progress_bar=show_progress_bar,
                              progress_desc="top texts", **options)
    # label sets stay a list (an array of tuples of different lengths is no array)
    labels = train_labels if any(isinstance(y, (list, tuple, set, frozenset)) for y in train_labels) \
        else np.asarray(train_labels)
    found = {}
    for feature, part in parts.items():
        column = int(np.searchsorted(columns_arrays[part["key"]], part["index"]))
        values = pooled[part["key"]][:, column]
        texts = []
        for row in np.argsort(-values, kind="stable")[:texts_per_neuron]:
            entry = {"text": train_texts[row], "label": _label_value(labels[row]), "activation": float(values[row])}
            if part["pooling"] == "max":
                activations = token_activations(backbone, train_texts[row],
                                                {part["key"]: np.asarray([part["index"]])}, **options)
                entry["peak"] = peak_token(activations, part["key"], 0)
            texts.append(entry)
        found[feature] = texts
    return found


def top_neurons(clf, train_texts: Sequence[str], train_labels: Sequence, *, count: int = 12,
                texts_per_neuron: int = 3, show_progress_bar: bool = False,
                texts: dict[int, list[dict]] | None = None, ranked_by: str | None = None) -> list[dict]:
    """The final classifier's strongest neurons (``neuron_strength``) with the training texts that activate each
    most (``neuron_texts``, or ``texts`` when already extracted for these features); for max-pooled neurons, the
    token where it peaked in each of those texts. ``ranked_by``: said in each entry when given (a multi-label
    model's neurons are ranked by their weights pooled over labels)."""
    readout = clf.readout_
    weights = readout.head.feature_weights()
    strength = neuron_strength(clf)
    chosen = np.argsort(-strength, kind="stable")[:count]
    if texts is None:
        texts = neuron_texts(clf, chosen, train_texts, train_labels, texts_per_neuron=texts_per_neuron,
                             show_progress_bar=show_progress_bar)
    classes = readout.classes
    rows_classes = [plain_label(classes[1])] if weights.shape[0] == 1 else [plain_label(c) for c in classes]
    return [{**neuron_parts(readout.neuron_names[feature]), "rank": rank, "feature": int(feature),
             "strength": float(strength[feature]),
             "weights": {str(c): float(w) for c, w in zip(rows_classes, weights[:, feature])},
             "top_texts": texts[int(feature)][:texts_per_neuron], **({"ranked_by": ranked_by} if ranked_by else {})}
            for rank, feature in enumerate(chosen, start=1)]


def search_table(clf, top: int = 10) -> dict:
    """The search's best ``top`` candidates by held-out score (``cv_results_`` by rank), and the chosen one if it
    is not among them: rank, readout kind, what it reads, C, features, mean and se of the held-out score."""
    results, chosen = clf.cv_results_, clf.best_index_
    order = sorted(range(len(results["rank_test_score"])), key=lambda i: (results["rank_test_score"][i], i))
    shown = order[:top] + ([chosen] if chosen is not None and chosen not in order[:top] else [])
    rows = []
    for i in shown:
        kind = results["param_readout_kind"][i]
        reads = (results["param_dense_key"][i] if kind == "dense" else
                 f"{results['param_representations'][i]} · {results['param_poolings'][i]}, η = "
                 f"{results['param_eta'][i]:g}, layers ≤ {results['param_exit_layer'][i]}"
                 + (f" + {results['param_dense_key'][i]}" if kind == "hybrid" else ""))
        rows.append({"index": i, "rank": int(results["rank_test_score"][i]), "kind": kind, "reads": reads,
                     "C": _C(results["param_C"][i]), "n_features": float(results["n_features"][i]),
                     "mean": float(results["mean_test_score"][i]), "se": results["se_test_score"][i],
                     "chosen": i == chosen})
    return {"n_candidates": len(order), "rows": rows,
            "floor": bool((getattr(clf, "selection_", None) or {}).get("floor"))}
