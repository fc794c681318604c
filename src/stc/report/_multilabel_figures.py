"""Matplotlib figures of a multi-label model's report, each drawn only from its JSON-able data dict: per-label
scores, each label's strongest neurons, and reliability pooled over labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["per_label_figure", "label_neurons_figure", "pooled_reliability_figure"]

#: the most labels drawn as panels of the per-label neurons figure (the table lists every label)
MAX_PANELS = 24


def _finish(figure, axes, title: str, xlabel: str, ylabel: str):
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def per_label_figure(data: dict):
    """F1, precision and recall of each label (support beside its name) and its decision threshold."""
    labels = list(data["per_label"])
    height = 0.55 * len(labels) + 2.2
    figure, axes = plt.subplots(figsize=(8.5, height))
    rows = np.arange(len(labels))[::-1]  # the first label on top
    bar = 0.26
    for offset, (field, colour) in zip((bar, 0, -bar), (("f1", "#1f77b4"), ("precision", "#2ca02c"),
                                                              ("recall", "#ff7f0e"))):
        axes.barh(rows + offset, [data["per_label"][label][field] for label in labels], bar, color=colour,
                  label=field)
    axes.scatter([data["per_label"][label]["threshold"] for label in labels], rows, marker="|", s=260,
                 color="black", zorder=5, label="decision threshold (probability)")
    axes.set_yticks(rows, [f"{label} (n = {data['per_label'][label]['support']})" for label in labels], fontsize=8)
    axes.set_xlim(0, 1.0)
    axes.set_ylim(-0.6, len(labels) - 0.4)
    figure.legend(*axes.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=4)
    title = (f"{data['split'].capitalize()} split per label (n = {data['n']}): micro-F1 {data['micro_f1']:.3f}, "
             f"macro-F1 {data['macro_f1']:.3f},\nsamples-F1 {data['samples_f1']:.3f}, subset accuracy "
             f"{data['subset_accuracy']:.3f}, Hamming loss {data['hamming_loss']:.3f}")
    _finish(figure, axes, title, "score", "")
    figure.tight_layout(rect=(0, 0.3 / height, 1, 1))  # room for the legend below
    return figure


def label_neurons_figure(data: dict):
    """One panel per label: the signed weights of the neurons its head weighs most."""
    labels = data["labels"][:MAX_PANELS]
    columns = min(3, len(labels))
    rows = int(np.ceil(len(labels) / columns))
    height = (0.32 * data["per_label"] + 1.4) * rows + 0.6
    figure, panels = plt.subplots(rows, columns, figsize=(4.2 * columns, height), squeeze=False, layout="constrained")
    for axes, entry in zip(panels.ravel(), labels):
        neurons = entry["neurons"][::-1]  # the strongest on top
        weights = [n["weight"] for n in neurons]
        axes.barh(range(len(neurons)), weights, color=["#1b5e20" if w > 0 else "#b71c1c" for w in weights])
        axes.set_yticks(range(len(neurons)), [n["neuron"] for n in neurons], fontsize=7)
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_title(f"{entry['label']} (threshold {entry['threshold']:.2f})", fontsize=9)
        axes.tick_params(axis="x", labelsize=7)
        axes.grid(alpha=0.3)
    for axes in panels.ravel()[len(labels):]:
        axes.axis("off")
    more = f" (the first {MAX_PANELS} of {len(data['labels'])} labels)" if len(data["labels"]) > MAX_PANELS else ""
    figure.suptitle(f"Each label's strongest neurons: largest |weight| in its logistic regression{more}",
                    fontsize=10)
    figure.supxlabel("weight on the standardised activation", fontsize=9)  # the constrained layout makes room
    return figure


def pooled_reliability_figure(data: dict):
    """Share of (text, label) pairs that carry the label against the mean predicted probability per bin (above),
    and how many pairs fall in each bin (below, log scale: most probabilities are near 0 or 1)."""
    figure, (curve_axes, count_axes) = plt.subplots(2, 1, figsize=(6.5, 5.6), sharex=True,
                                                    gridspec_kw={"height_ratios": [3, 1]})
    curve_axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    width = 1 / data["n_bins"] / (len(data["curves"]) + 1)
    for index, curve in enumerate(data["curves"]):
        filled = [b for b in curve["bins"] if b["count"]]
        curve_axes.plot([b["probability"] for b in filled], [b["positive_rate"] for b in filled], marker="o",
                        markersize=4, label=f"{curve['name']} (T = {curve['temperature']:.3g}): ECE "
                                            f"{curve['ece']:.4f}, log loss {curve['log_loss']:.4f}")
        count_axes.bar([(b["low"] + b["high"]) / 2 + (index - (len(data["curves"]) - 1) / 2) * width
                        for b in curve["bins"]], [b["count"] for b in curve["bins"]], width, alpha=0.8)
    curve_axes.set_xlim(0, 1.0)
    curve_axes.set_ylim(-0.02, 1.02)
    curve_axes.legend(fontsize=8, loc="upper left")
    curve_axes.set_title(f"Reliability on the {data.get('split', 'test')} split, pooled over labels as binary "
                         f"events\n({data['n']} texts × {data['n_labels']} labels = {data['n_pairs']} pairs, "
                         f"{data['n_bins']} equal-width bins)", fontsize=10)
    curve_axes.set_ylabel("share of pairs whose text carries the label")
    curve_axes.grid(alpha=0.3)
    count_axes.set_yscale("symlog", linthresh=1)
    return _finish(figure, count_axes, "", "predicted probability of the label", "pairs")
