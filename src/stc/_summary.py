"""What a fitted model says about itself, in lines for a terminal: its configuration and the score to expect."""

from __future__ import annotations

from .readout import chosen_readout

__all__ = ["summary_lines", "estimate_lines", "search_lines", "NOISY_ESTIMATE_SE"]

#: An expected score whose standard error is above this (5 points of accuracy or F1) says little about the model.
NOISY_ESTIMATE_SE = 0.05


def _penalty_text(C) -> str:
    """A candidate's C as printed; a multi-label head saved before its C was searched (C None) chose its ridge
    penalty by leave-one-out."""
    return "ridge penalty by leave-one-out" if C is None else f"C={C:g}"


def summary_lines(clf) -> list[str]:
    config = clf.configuration_
    chosen = chosen_readout(config)
    eta = "" if chosen.eta is None else f" eta={config['eta']}"  # a dense readout keeps every neuron: no η
    lines = [f"configuration: readout={chosen.kind} representations={config['representations']} "
             f"poolings={config['poolings']}{eta} "
             + _penalty_text(config["C"]),
             f"exit layer: {clf.exit_layer_} of {clf.backbone_['num_layers']}",
             f"kept neurons: {clf.n_features_} (e.g. {', '.join(clf.kept_neurons_[:3])})"]
    selection = getattr(clf, "selection_", None) or {}
    margin = selection.get("floor_margin")  # models saved before it have none
    if chosen.kind == "dense" and selection.get("floor") == chosen.dense_key:
        beaten = f" (the search's choice: {margin[0]:+.4f} ± {margin[1]:.4f})" if margin else ""
        lines.append(f"the embedding floor chose {chosen.dense_key} (the backbone's sentence embedding): no other "
                     f"readout beat it beyond noise{beaten}")
    elif chosen.kind == "dense":
        lines.append(f"the dense readout won: every neuron of {chosen.dense_key} (the sentence embedding of "
                     f"that layer); no sparse set of neurons beat it beyond noise")
    elif chosen.kind == "hybrid":
        lines.append(f"the hybrid readout won: every neuron of {chosen.dense_key} (the sentence embedding of "
                     f"that layer) plus the kept neurons at eta={chosen.eta:g} of the other arrays")
    if margin and selection.get("floor") is None:
        lines.append(f"against the embedding readout (the floor): {margin[0]:+.4f} ± {margin[1]:.4f} per fold, "
                     f"held out: beyond noise")
    if config.get("head") == "mlp":
        lines.append(f"head: an MLP ({clf.readout_.head.n_hidden} ReLU units) on these neurons: it beat every "
                     f"linear head on them by more than one standard error of the folds")
    return lines + estimate_lines(clf)


def estimate_lines(clf) -> list[str]:
    """How the settings were chosen, and the expected test score with its standard error."""
    selection = getattr(clf, "selection_", None)
    lines = []
    if selection:
        repeats = int(selection.get("repeats") or 1)  # models saved before repeated folds have none
        how = (f"{selection['folds']}-fold cross-validation" if selection["protocol"] == "cv"
               else "one validation split")
        if repeats > 1:
            how += f" over {repeats} seeded partitions (every candidate scored on each)"
        rule = "one-standard-error rule" if selection["rule"] == "one_se" else "best score"
        se = clf.val_score_se_
        spread = "" if se is None or se != se else f" ± {se:.4f}"  # one validation block: no spread
        lines.append(f"selection: {how}, {rule}, {selection['n_candidates']} candidates; held-out {clf.metric_} of "
                     f"the chosen one {clf.val_score_:.4f}{spread}")
    if getattr(clf, "class_weight_", None) == "balanced":
        lines.append("class weights: balanced (every class counts the same in the probes and the final fit"
                     + (", as in macro_f1)" if clf.class_weight == "auto" else ")"))
    if selection and selection.get("unscored_classes"):
        rare = selection["unscored_classes"]
        lines.append(f"not scored (too rare to hold out; trained on in every fold): {len(rare)} class(es): "
                     f"{', '.join(map(str, rare[:10]))}{', ...' if len(rare) > 10 else ''}")
    if getattr(clf, "expected_score_", None) is not None:
        lines.append(f"expected test {clf.metric_}: {clf.expected_score_:.4f} ± {clf.expected_score_se_:.4f} "
                     f"(the selection's optimism left out)")
        if (clf.expected_score_se_ or 0) > NOISY_ESTIMATE_SE:
            lines.append(f"the estimate is too noisy to act on (standard error above {NOISY_ESTIMATE_SE:.2f}): "
                         f"too few held-out texts; label more texts before trusting it")
    temperature = getattr(clf, "temperature_", 1.0)
    if temperature != 1.0:
        lines.append(f"calibration: temperature {temperature:.3f} on held-out decision values")
    return lines


def search_lines(clf, top: int = 5) -> list[str]:
    """The best ``top`` candidates of the search (``cv_results_`` by rank), the chosen one marked with ``*``."""
    results, chosen = clf.cv_results_, clf.best_index_
    order = sorted(range(len(results["rank_test_score"])), key=lambda i: (results["rank_test_score"][i], i))
    shown = order[:top] + ([chosen] if chosen is not None and chosen not in order[:top] else [])
    lines = [f"search: {len(order)} candidates; the best {min(top, len(order))} by held-out {clf.metric_} "
             + ("(* the chosen one):" if chosen is not None else "(the model reads none of them):")]
    for i in shown:
        eta = results["param_eta"][i]
        what = (results["param_dense_key"][i] if results["param_readout_kind"][i] == "dense" else
                f"{results['param_representations'][i]} {results['param_poolings'][i]} eta={eta} "
                f"exit={results['param_exit_layer'][i]}")
        if results["param_readout_kind"][i] == "hybrid":
            what += f" + {results['param_dense_key'][i]}"
        if results.get("param_head", [None] * len(order))[i] == "mlp":
            what += " (MLP head)"
        se = results["se_test_score"][i]
        lines.append(f"  {'*' if i == chosen else ' '} {results['rank_test_score'][i]:>3}. "
                     f"{results['param_readout_kind'][i]:<6} {what} {_penalty_text(results['param_C'][i])} "
                     f"features={results['n_features'][i]:g}: {results['mean_test_score'][i]:.4f}"
                     + (f" ± {se:.4f}" if se is not None else ""))
    return lines
