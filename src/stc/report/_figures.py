"""Matplotlib figures of the report, each drawn only from its JSON-able data dict (what is plotted is what is saved)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._multilabel_figures import label_neurons_figure, per_label_figure, pooled_reliability_figure  # noqa: E402

__all__ = ["FIGURES"]

_STYLE = {"mean": "-", "max": "--", "first": ":", "last": "-."}
_COLOUR = {"hidden": "#1f77b4", "ffn": "#d62728"}
_MARKER = {"mean": "o", "max": "s", "first": "^", "last": "v"}
_ALPHA = {"mean": 1.0, "max": 0.7, "first": 0.4, "last": 0.4}


def _finish(figure, axes, title: str, xlabel: str, ylabel: str):
    axes.set_title(title, fontsize=11)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def layer_curve_figure(data: dict):
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    for series in data["series"]:
        axes.plot(series["layers"], series["val_scores"], _STYLE.get(series["pooling"], "-"),
                  marker=_MARKER.get(series["pooling"], "o"), color=_COLOUR.get(series["representation"], "grey"),
                  label=f"{series['representation']} · {series['pooling']}", markersize=4)
    embedding = data.get("embedding")
    if embedding:
        axes.scatter([embedding["layer"]], [embedding["val_score"]], marker="*", s=220, color="black", zorder=5,
                     label=f"last-layer embedding ({embedding['pooling']}): {embedding['val_score']:.3f}")
        axes.axhline(embedding["val_score"], color="black", alpha=0.25, linewidth=1)
    axes.axvline(data["exit_layer"], color="green", alpha=0.4, linewidth=2,
                 label=f"chosen exit layer {data['exit_layer']}")
    axes.set_xticks(range(0, data["num_layers"] + 1))
    axes.legend(fontsize=8, ncol=2)
    return _finish(figure, axes, "Probe validation score by layer (0 = embeddings)", "layer",
                   f"validation {data['metric']}")


def kept_per_layer_figure(data: dict):
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    keys = data["by_key"]
    groups = sorted({(r["representation"], r["pooling"]) for r in keys})
    layers = sorted({r["layer"] for r in keys})
    width = 0.8 / max(len(groups), 1)
    for g, (representation, pooling) in enumerate(groups):
        counts = {r["layer"]: r["kept"] for r in keys
                  if (r["representation"], r["pooling"]) == (representation, pooling)}
        left.bar(np.asarray(layers) + (g - (len(groups) - 1) / 2) * width, [counts.get(layer, 0) for layer in layers],
                 width, color=_COLOUR.get(representation, "grey"), alpha=_ALPHA.get(pooling, 0.5),
                 label=f"{representation} · {pooling}", hatch="//" if pooling == "max" else None)
    left.set_xticks(layers)
    left.legend(fontsize=8)
    where = f" ({data['short']})" if data["readout"] == "sparse" else f"\n{data['short']}"  # a dense key is long
    _finish(figure, left, f"Kept neurons of the final model{where}", "layer", "neurons kept")
    all_depths, leader = data["by_layer_all_depths"], data["all_depths"]
    right.bar([r["layer"] for r in all_depths], [r["kept"] for r in all_depths], color="#7f7f7f")
    right.axvline(data["exit_layer"] + 0.5, color="green", alpha=0.6, linewidth=2, label="exit")
    right.set_xticks([r["layer"] for r in all_depths])
    right.legend(fontsize=8)
    # the sparse leader of the exit-layer search: the chosen sparse neurons, or those a dense readout beat
    title = (f"Sparse leader at η = {leader['eta']:g}, every layer\n({leader['representations']}, "
             f"{leader['poolings']})" if leader.get("eta") is not None else "No sparse candidate in the exit search")
    return _finish(figure, right, title, "layer", "neurons kept")


def _set_label(series: dict) -> str:
    return f"{series['representations']} · {series['poolings']}"


def _is_chosen(series: dict, chosen: dict) -> bool:
    """Whether a stage-1 series is the chosen readout's sparse set (never for a dense readout, which has none)."""
    return chosen["eta"] is not None and (series["representations"], series["poolings"]) == (
        chosen["representations"], chosen["poolings"])


def _log_axes(axes, data: dict, *, y: bool) -> None:
    """Log η (and count) axes; with no sparse candidate to draw, a note instead of an empty log scale."""
    if not data["series"]:
        axes.text(0.5, 0.5, "no sparse candidate: nothing to draw across η", ha="center", va="center",
                  transform=axes.transAxes)
        return
    axes.set_xscale("log")
    if y:
        axes.set_yscale("log")


def kept_vs_eta_figure(data: dict):
    per_layer = data.get("kept_per_layer_by_eta")
    figure, axes_list = plt.subplots(1, 2 if per_layer else 1, figsize=(12, 4.2) if per_layer else (7.5, 4.2))
    axes = axes_list[0] if per_layer else axes_list
    for series in data["series"]:
        chosen = _is_chosen(series, data["chosen"])
        axes.plot(series["etas"], series["n_features"], marker="o", markersize=3, linewidth=2.5 if chosen else 1,
                  alpha=1 if chosen else 0.55, label=_set_label(series) + (" (chosen)" if chosen else ""))
    _log_axes(axes, data, y=True)
    if data["chosen"]["eta"] is not None:  # a dense readout chose no η
        axes.axvline(data["chosen"]["eta"], color="green", alpha=0.4, linewidth=2)
    if data["series"]:
        axes.legend(fontsize=7, loc="upper left")
    _finish(figure, axes, "Neurons kept (all layers) across the η grid", "η", "neurons kept")
    if per_layer:
        _kept_heatmap(figure, axes_list[1], per_layer)
    return figure


def _kept_heatmap(figure, axes, per_layer: dict) -> None:
    """Layers × η: neurons kept per layer by the chosen representations and poolings."""
    matrix = np.asarray(per_layer["counts"], dtype=float)
    image = axes.imshow(np.log10(matrix + 1), aspect="auto", cmap="viridis", origin="lower")
    axes.set_xticks(range(len(per_layer["etas"])), [f"{e:g}" for e in per_layer["etas"]], fontsize=7)
    axes.set_yticks(range(len(per_layer["layers"])), per_layer["layers"])
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=6, color="white")
    figure.colorbar(image, ax=axes, fraction=0.046, label="log10(kept + 1)")
    _finish(figure, axes, "Kept per layer across η (chosen representations, poolings)", "η", "layer")


def metric_vs_eta_figure(data: dict):
    figure, axes = plt.subplots(figsize=(9.5, 4.2))
    for series in data["series"]:
        chosen = _is_chosen(series, data["chosen"])
        axes.plot(series["etas"], series["val_scores"], marker="o", markersize=3, linewidth=2.5 if chosen else 1,
                  alpha=1 if chosen else 0.55, label=_set_label(series) + (" (chosen)" if chosen else ""))
    if data["chosen"]["eta"] is not None:  # a dense readout chose no η: the sparse candidates are drawn alone
        axes.axvline(data["chosen"]["eta"], color="green", alpha=0.4, linewidth=2,
                     label=f"chosen η {data['chosen']['eta']:g}")
    _log_axes(axes, data, y=False)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    C = f", C = {data['C']:g}" if data.get("C") is not None else ""
    return _finish(figure, axes, f"Validation score vs η (all layers{C})", "η", f"validation {data['metric']}")


def _C_label(C: float | None) -> str:
    """A series' name: its C, or (multi-label models saved before the ridge's C was searched) the head's rule."""
    return "ridge penalty by leave-one-out" if C is None else f"C = {C:g}"


def metric_vs_exit_figure(data: dict):
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    for series in data["series"]:
        axes.plot(series["exit_layers"], series["val_scores"], marker="o", markersize=4, label=_C_label(series["C"]))
    for readout, marker in (("dense", "D"), ("hybrid", "P")):  # stage 2's other readouts, one point per C
        points = [p for p in data.get("other_readouts", []) if p["readout"] == readout]
        if points:
            Cs = ", ".join("—" if p["C"] is None else f"{p['C']:g}" for p in points)
            what = f"{readout} {points[0]['dense_key']}" + (" + sparse" if readout == "hybrid" else "")
            axes.scatter([p["exit_layer"] for p in points], [p["val_score"] for p in points], marker=marker, s=40,
                         label=f"{what} (C = {Cs})")
    chosen = data["chosen"]
    axes.scatter([chosen["exit_layer"]], [chosen["val_score"]], s=220, marker="*", color="black", zorder=5,
                 label=f"chosen ({chosen.get('readout', 'sparse')}): exit {chosen['exit_layer']}, "
                       f"{chosen['n_features']} neurons")
    axes.set_xticks(range(1, data["num_layers"] + 1))
    axes.legend(fontsize=8)
    return _finish(figure, axes, "Early exit: validation score by exit layer",
                   "exit layer (forward pass stops here)", f"validation {data['metric']}")


def confusion_figure(data: dict):
    matrix = np.asarray(data["matrix"])
    size = max(3.2, 0.6 * len(data["classes"]) + 2)
    figure, axes = plt.subplots(figsize=(size + 0.8, size))
    image = axes.imshow(matrix, cmap="Blues")
    labels = [str(c) for c in data["classes"]]
    tilted = len(labels) > 3
    axes.set_xticks(range(len(labels)), labels, rotation=45 if tilted else 0, ha="right" if tilted else "center")
    axes.set_yticks(range(len(labels)), labels)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_title(f"{data.get('split', 'test').capitalize()} confusion matrix ({data['metric']} "
                   f"{data['score']:.3f}, n = {data['n']})", fontsize=10)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    figure.tight_layout()
    return figure


def reliability_figure(data: dict):
    """Observed accuracy against mean confidence per bin (above) and how many texts fall in each bin (below)."""
    if "events" in data:  # a multi-label model's: every (text, label) probability, pooled over labels
        return pooled_reliability_figure(data)
    figure, (curve_axes, count_axes) = plt.subplots(2, 1, figsize=(6.5, 5.6), sharex=True,
                                                    gridspec_kw={"height_ratios": [3, 1]})
    low = np.floor(data["n_bins"] / data["n_classes"]) / data["n_bins"]  # no confidence is below 1 / n_classes
    curve_axes.plot([low, 1], [low, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    width = 1 / data["n_bins"] / (len(data["curves"]) + 1)  # the curves' bars side by side within a bin
    for index, curve in enumerate(data["curves"]):
        filled = [b for b in curve["bins"] if b["count"]]
        curve_axes.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], marker="o",
                        markersize=4, label=f"{curve['name']} (T = {curve['temperature']:.3g}): ECE "
                                            f"{curve['ece']:.4f}, log loss {curve['log_loss']:.4f}")
        count_axes.bar([(b["low"] + b["high"]) / 2 + (index - (len(data["curves"]) - 1) / 2) * width
                        for b in curve["bins"]], [b["count"] for b in curve["bins"]], width, alpha=0.8)
    curve_axes.set_xlim(low, 1.0)
    curve_axes.set_ylim(min(low, curve_axes.get_ylim()[0]), 1.02)
    curve_axes.legend(fontsize=8, loc="upper left")
    curve_axes.set_title(f"Reliability on the {data.get('split', 'test')} split (n = {data['n']}, "
                         f"{data['n_bins']} equal-width bins)", fontsize=11)
    curve_axes.set_ylabel("observed accuracy")
    curve_axes.grid(alpha=0.3)
    return _finish(figure, count_axes, "", "predicted confidence (probability of the predicted class)", "texts")


def top_neurons_figure(data: list[dict]):
    figure, axes = plt.subplots(figsize=(7.5, 0.35 * len(data) + 1.5))
    names = [n["neuron"] for n in data][::-1]
    classes = list(data[0]["weights"]) if data else []
    height = 0.8 / max(len(classes), 1)
    for c, label in enumerate(classes):
        axes.barh(np.arange(len(names)) + (c - (len(classes) - 1) / 2) * height,
                  [n["weights"][label] for n in data][::-1], height, label=f"weight toward {label}")
    axes.set_yticks(range(len(names)), names, fontsize=8)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.legend(fontsize=8)
    ranked_by = data[0].get("ranked_by") if data else None  # a multi-label model's: pooled over labels
    title = "Top neurons of the final classifier" + (f"\n(ranked by {ranked_by})" if ranked_by else "")
    return _finish(figure, axes, title, "weight on the standardised activation", "")


#: figure name -> (data section, drawing function)
FIGURES = {
    "layer_curve": layer_curve_figure,
    "kept_per_layer": kept_per_layer_figure,
    "kept_vs_eta": kept_vs_eta_figure,
    "metric_vs_eta": metric_vs_eta_figure,
    "metric_vs_exit": metric_vs_exit_figure,
    "confusion_matrix": confusion_figure,
    "reliability": reliability_figure,
    "top_neurons": top_neurons_figure,
    "per_label": per_label_figure,
    "label_neurons": label_neurons_figure,
}


def save_figure(name: str, data, path) -> None:
    """Draw figure ``name`` from its data and write it as PNG."""
    figure = FIGURES[name](data)
    figure.savefig(path, dpi=110)
    plt.close(figure)
