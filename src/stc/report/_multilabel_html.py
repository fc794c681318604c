"""The sections of the report's page that only a multi-label model has: its scores per label, each label's
strongest neurons, and the caption of reliability pooled over labels."""

from __future__ import annotations

from html import escape
from pathlib import Path

from ._parts import card, figure, highlighted, number

__all__ = ["label_text", "scores_section", "label_neurons_section", "pooled_reliability_section", "TOP_NEURONS_INTRO",
           "TOP_NEURONS_CAPTION"]

TOP_NEURONS_INTRO = ("Ranked by their weights pooled over labels: the root of the sum of each neuron's squared weights "
                     "in the labels' logistic regressions, on the standardised activation (the kept set itself was "
                     "chosen by pooling the probes' squared weights over labels alike). Each label's own strongest "
                     "neurons follow below.")
TOP_NEURONS_CAPTION = "Weights of the top neurons (one bar per label's logistic regression)."

_METRICS = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_f1", "samples-F1"),
            ("subset_accuracy", "subset accuracy (every label right)"),
            ("hamming_loss", "Hamming loss (share of wrong text-label pairs)"))


def label_text(label) -> str:
    """A training text's label for display: a label set as its labels joined, or "no label"."""
    if isinstance(label, list):
        return ", ".join(map(str, label)) if label else "no label"
    return str(label)


def scores_section(out: Path, data: dict | None) -> str:
    """The multi-label metrics of the evaluation split as cards, the per-label figure and the per-label table."""
    if not data:
        return ""
    cards = "".join(card(f"{data['split']} {name}", number(data[field], field)) for field, name in _METRICS)
    rows = "".join(
        f"<tr><td data-check='per-label' data-value='{escape(str(label))}'>{escape(str(label))}</td>"
        + "".join(f"<td class='num'>{number(entry[field], f'{field}-{label}', 3)}</td>"
                  for field in ("f1", "precision", "recall"))
        + f"<td class='num'>{number(entry['support'], f'support-{label}')}</td>"
          f"<td class='num'>{entry['predicted']}</td>"
          f"<td class='num'>{number(entry['threshold'], f'threshold-{label}', 3)}</td></tr>"
        for label, entry in data["per_label"].items())
    caption = (f"The {escape(data['split'])} split, per label: F1, precision and recall of the texts predicted to "
               f"carry it, its support (texts carrying it) and, as a tick, its decision threshold (the label is "
               f"predicted where its probability reaches it).")
    return (f"<h2>How well it labels the {escape(data['split'])} split</h2><p>Multi-label: each text carries any "
            f"number of the {data['n_labels']} labels ({data['mean_labels_per_text']:.2f} per {escape(data['split'])}"
            f" text on average), and each label has its own logistic regression and threshold. {data['n']} texts."
            f"</p><div class='cards'>{cards}</div>{figure(out, 'per_label', caption)}<table class='per-label'>"
            f"<tr><th>label</th><th>F1</th><th>precision</th><th>recall</th><th>support</th><th>predicted</th>"
            f"<th>threshold</th></tr>{rows}</table>")


def label_neurons_section(out: Path, data: dict | None) -> str:
    """Each label's strongest neurons: the figure, then a table with each neuron's weight and the training text
    that activates it most (✓ when that text carries the label)."""
    if not data:
        return ""
    rows = []
    for entry in data["labels"]:
        label = entry["label"]
        for neuron in entry["neurons"]:
            top = neuron.get("top_text")
            text = "" if not top else (
                f"{highlighted(top['text'], top.get('peak'))} <span class='label'>[{escape(label_text(top['label']))}"
                f", {top['activation']:.3f}] {'✓' if label in top['label'] else '✗'}</span>")
            weight = neuron["weight"]
            rows.append(f"<tr><td>{escape(str(label)) if neuron['rank'] == 1 else ''}</td>"
                        f"<td class='num'>{neuron['rank']}</td><td><code data-check='label-neuron-{escape(str(label))}"
                        f"-{neuron['rank']}' data-value='{escape(neuron['neuron'])}'>{escape(neuron['neuron'])}"
                        f"</code></td><td class='num'><span class='{'pos' if weight > 0 else 'neg'}'>{weight:+.3f}"
                        f"</span></td><td>{text}</td></tr>")
    caption = "Each label's strongest neurons, by the size of their weight in that label's logistic regression."
    return (f"<h2>The neurons each label listens to</h2><p>{escape(data['note'])} The {data['per_label']} "
            f"strongest of the {data['n_features']} kept neurons per label; for each, the training text that "
            f"activates it most, its labels, and whether it carries this label (✓).</p>"
            f"{figure(out, 'label_neurons', caption)}<table class='label-neurons'><tr><th>label</th><th>#</th>"
            f"<th>neuron</th><th>weight</th><th>training text that activates it most [its labels, activation]</th>"
            f"</tr>{''.join(rows)}</table>")


def pooled_reliability_section(out: Path, data: dict | None) -> str:
    """The calibration section of a multi-label model: every (text, label) probability against whether the text
    carries the label, pooled over labels."""
    if not data:
        return ""
    parts = [f"{escape(curve['name'])} (T = {curve['temperature']:.3f}): ECE "
             f"{number(curve['ece'], f'ece-{index}')}, log loss {number(curve['log_loss'], f'log_loss-{index}')}"
             for index, curve in enumerate(data["curves"])]
    worst = max(data["curves"][-1]["per_label_ece"].items(), key=lambda item: item[1])
    caption = (f"Pooled over labels as binary events: each of the {data['n_pairs']} (text, label) pairs of the "
               f"{escape(data['split'])} split ({data['n']} texts × {data['n_labels']} labels) is one prediction, "
               f"its probability against whether the text carries the label, in {data['n_bins']} equal-width "
               f"probability bins; on the diagonal a probability of 0.8 is a label the text carries 8 times in 10. "
               f"Below: pairs per bin. " + "; ".join(parts) + f". Per label, the largest ECE is "
               f"{escape(worst[0])}'s ({worst[1]:.4f}; every label's is in <code>reliability.json</code>).")
    return "<h2>Can the probabilities be trusted: calibration</h2>" + figure(out, "reliability", caption)
