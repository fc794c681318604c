"""The self-contained HTML page: CSS, script and images inline, nothing fetched from anywhere."""

from __future__ import annotations

from html import escape
from pathlib import Path

from ._multilabel import UNAVAILABLE_EMBEDDING
from ._multilabel_html import (TOP_NEURONS_CAPTION, TOP_NEURONS_INTRO, label_neurons_section, label_text,
                               pooled_reliability_section, scores_section)
from ._parts import card, figure, highlighted, number

__all__ = ["render_page"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5rem 2rem 4rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.sub { color: #555; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 0.6rem 1rem; min-width: 8.5rem; background: #fafafa; }
.card .value { font-size: 1.5rem; font-weight: 600; } .card .name { color: #666; font-size: 0.85rem; }
.card .value .words { font-size: 0.95rem; font-weight: 500; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; } code { background: #f3f3f3; padding: 0 0.25rem; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
mark { background: #ffd54f; padding: 0 0.1rem; border-radius: 2px; font-weight: 600; }
.texts { margin: 0; padding-left: 1.1rem; } .texts li { margin-bottom: 0.25rem; } .label { color: #777; }
.note { background: #fff8e1; border-left: 4px solid #ffb300; padding: 0.5rem 0.8rem; font-size: 0.9rem; }
.pos { color: #1b5e20; } .neg { color: #b71c1c; }
"""

# Runs after every image has loaded or failed: the browser test reads these attributes from the DOM.
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(loaded.length);
  document.body.dataset.imagesOk = String(images.length > 0 && loaded.length === images.length);
});
"""


def _neuron_rows(neurons: list[dict]) -> str:
    rows = []
    for neuron in neurons:
        weights = "<br>".join(f"<span class='{'pos' if w > 0 else 'neg'}'>{w:+.3f}</span> → {escape(str(label))}"
                              for label, w in neuron["weights"].items())
        texts = "".join(f"<li>{highlighted(t['text'], t.get('peak'))} <span class='label'>["
                        f"{escape(label_text(t['label']))}, {t['activation']:.3f}]</span></li>"
                        for t in neuron["top_texts"])
        rows.append(f"<tr><td class='num'>{neuron['rank']}</td><td><code data-check='neuron-{neuron['rank']}' "
                    f"data-value='{escape(neuron['neuron'])}'>{escape(neuron['neuron'])}</code></td>"
                    f"<td>{escape(neuron['representation'])}</td><td class='num'>{neuron['layer']}</td>"
                    f"<td>{escape(neuron['pooling'])}</td><td class='num'>{neuron['index']}</td>"
                    f"<td class='num'>{weights}</td><td><ol class='texts'>{texts}</ol></td></tr>")
    word = "labels" if any(isinstance(t["label"], list) for n in neurons for t in n["top_texts"]) else "label"
    return ("<table><thead><tr><th>#</th><th>neuron</th><th>representation</th><th>layer</th><th>pooling</th>"
            f"<th>index</th><th>weight</th><th>training texts that activate it most [{word}, activation]</th></tr>"
            "</thead><tbody>" + "".join(rows) + "</tbody></table>")


def _signal_summary(curve: dict) -> str:
    """Which layers and poolings carry the signal, read off the probe scores (no judgement added)."""
    lines = []
    for series in sorted(curve["series"], key=lambda s: -max(s["val_scores"])):
        best = max(range(len(series["layers"])), key=lambda i: series["val_scores"][i])
        lines.append(f"<li><code>{escape(series['representation'])} · {escape(series['pooling'])}</code>: best at "
                     f"layer {series['layers'][best]} ({series['val_scores'][best]:.3f}); layer "
                     f"{series['layers'][0]} {series['val_scores'][0]:.3f} → layer {series['layers'][-1]} "
                     f"{series['val_scores'][-1]:.3f}</li>")
    return "<ul>" + "".join(lines) + "</ul>"


def _reliability(out: Path, data: dict | None) -> str:
    """The calibration section: the reliability diagram, its caption giving ECE and log loss of each curve (before
    and after the temperature); nothing when there was no labelled split to draw it from."""
    if not data:
        return ""
    parts = [f"{escape(curve['name'])} (T = {curve['temperature']:.3f}): ECE "
             f"{number(curve['ece'], f'ece-{index}')}, log loss {number(curve['log_loss'], f'log_loss-{index}')}"
             f", accuracy {number(curve['accuracy'], f'accuracy-{index}')}"
             for index, curve in enumerate(data["curves"])]
    caption = (f"Predicted confidence (the probability of the predicted class) against the share of the "
               f"{escape(data['split'])} texts it got right, in each of {data['n_bins']} equal-width confidence "
               f"bins; on the diagonal a probability of 0.8 is right 8 times in 10. Below: texts per bin. "
               + "; ".join(parts) + ".")
    return "<h2>Can the probabilities be trusted: calibration</h2>" + figure(out, "reliability", caption)


def _search_rows(search: dict | None, metric: str) -> str:
    """The search's best candidates as a table, the chosen one marked; nothing for a report without the section."""
    if not search:
        return ""
    rows = "".join(
        f"<tr{' class=chosen' if row['chosen'] else ''}><td>{row['rank']}{' ★' if row['chosen'] else ''}</td>"
        f"<td>{escape(row['kind'])}</td><td><code>{escape(row['reads'])}</code></td><td>{'—' if row['C'] is None else format(row['C'], 'g')}</td>"
        f"<td>{row['n_features']:g}</td><td>{row['mean']:.4f}"
        + (f" ± {row['se']:.4f}" if row["se"] is not None else "") + "</td></tr>" for row in search["rows"])
    floor = (" The embedding floor chose the model: no readout beat the last layer's sentence embedding beyond "
             "the noise of the folds." if search.get("floor") else "")
    return (f"<h2>The search: its best candidates</h2><p>{search['n_candidates']} candidates scored on held-out "
            f"texts ({metric}; the record is <code>cv_results_</code>). ★ the chosen one: the simplest within one "
            f"standard error of the best, along its path.{floor}</p><table class='search'><tr><th>rank</th>"
            f"<th>readout</th><th>reads</th><th>C</th><th>features</th><th>held-out {metric}</th></tr>{rows}"
            f"</table>")


def _by_kind(out: Path, sections: dict) -> dict:
    """The parts of the page that differ for a multi-label model (its sections hold ``label_neurons``)."""
    if "label_neurons" not in sections:
        return {"classes": "Classes", "scores": "", "reliability": "",
                "top_intro": "Ranked by the size of their weight on the standardised activation.",
                "top_caption": "Weights of the top neurons (one bar per class row of the logistic regression).",
                "label_neurons": ""}
    return {"classes": "Labels (multi-label: a text carries any number of them)",
            "scores": scores_section(out, sections.get("per_label")),
            "reliability": pooled_reliability_section(out, sections.get("reliability")),
            "top_intro": TOP_NEURONS_INTRO, "top_caption": TOP_NEURONS_CAPTION,
            "label_neurons": label_neurons_section(out, sections["label_neurons"])}


def render_page(out: Path, sections: dict, context: dict) -> str:
    """The whole page as one string, from the report's data sections and the PNGs already written to ``out``."""
    config = sections["configuration"]
    curve = sections["layer_curve"]
    embedding = curve.get("embedding")
    eta = sections["eta_curves"]
    metric = escape(config["metric"])
    split = (sections.get("confusion_matrix") or sections.get("per_label") or {}).get("split", "test")
    backbone = str(config["backbone"]).rstrip("/").rpartition("/")[2]
    cards = "".join([
        card(f"held-out {config['metric']} of the chosen setting", number(config["val_score"], "val_score")),
        card(f"expected test {config['metric']} (± se)",
             "–" if config.get("expected_score") is None else
             f"{number(config['expected_score'], 'expected_score')} ± {config['expected_score_se']:.3f}"),
        card(f"{split} {config['metric']}", number(config["test_score"], "test_score")),
        card("neurons used", number(config["n_features"], "n_features")),
        card(f"exit layer (of {config['num_layers']})", number(config["exit_layer"], "exit_layer")),
        card("η", number(config["eta"], "eta", 3)) if config["eta"] is not None else  # dense: no η, one array
        card("readout (no η)", f"<span class='words'>{escape(config['readout_description'])}</span>"),
        card("C", number(config["C"], "C", 3)),
        card(f"last-layer embedding, validation {config['metric']}",
             number(config["embedding_val_score"], "embedding_val_score") if not config.get("embedding_unavailable")
             else f"<span class='words' data-check='embedding_unavailable'>{escape(UNAVAILABLE_EMBEDDING)}</span>"),
    ])
    unavailable = config.get("embedding_unavailable")  # a multi-label model's baseline that cannot be fitted
    embedding_note = (f"The black star is the last-layer sentence-embedding baseline: {escape(embedding['source'])}."
                      if embedding else f"The last-layer embedding baseline is {escape(unavailable)}." if unavailable
                      else "No last-layer embedding score was given or fitted.")
    kind = _by_kind(out, sections)
    eta_note = f"<p class='note'>{escape(eta['note'])}</p>" if eta.get("note") else ""
    body = f"""
<h1>STC report: {escape(backbone)} on {escape(context['dataset'])}</h1>
<p class="sub">{escape(context['description'])}<br>{kind['classes']}: {escape(', '.join(map(str, config['classes'])))};
training texts {context['n_train']}, validation {context['n_val']}, {split} {config['n_test'] or 0}. Generated by stc
{escape(context['stc_version'])}.</p>
<h2>The chosen configuration</h2>
<p>The chosen readout: <span data-check="readout_description">{escape(config['readout_description'])}</span>.
Representations <code>{escape(config['representations'])}</code>, poolings <code>{escape(config['poolings'])}</code>:
{config['n_features']} neurons from layers up to {config['exit_layer']}, so the forward pass stops after block
{config['exit_layer']} of {config['num_layers']}.</p>
<div class="cards">{cards}</div>
{_search_rows(sections.get('search'), metric)}
{kind['scores'] or figure(out, 'confusion_matrix', f'The {split} split: rows true label, columns predicted.')}
{kind['reliability'] or _reliability(out, sections.get('reliability'))}
<h2>Where the signal is: probe score by layer</h2>
<p>Each line is an L1 logistic probe trained on one layer's pooled activations ({metric} on validation).
{embedding_note}</p>
{_signal_summary(curve)}
{figure(out, 'layer_curve', 'Probe validation score per layer, representation and pooling.')}
<h2>How many neurons are kept</h2>
{figure(out, 'kept_per_layer', 'Left: the neurons the final model reads by layer, representation and pooling. '
         'Right: for the sparse leader of the exit-layer search (the chosen η, representations and poolings, unless '
         'a dense readout won), the neurons each layer adds.')}
{eta_note}
{figure(out, 'kept_vs_eta', 'Total kept neurons at full depth for each representation × pooling set, across η.')}
{figure(out, 'metric_vs_eta', 'Validation score against η at full depth (search stage 1, one C).')}
<h2>Early exit: the trade-off</h2>
{figure(out, 'metric_vs_exit', 'Validation score by exit layer for each C of the final classifier (search stage 2, '
         'the representations, poolings and η of the sparse leader; dense and hybrid candidates as points of their '
         'own); '
         'the star is the chosen point.')}
<h2>The neurons the classifier listens to</h2>
<p>{kind['top_intro']} Each neuron is named
<code>representation.Llayer.pooling.index</code>. For max-pooled neurons the token where the neuron peaked is
<mark>highlighted</mark>.</p>
{figure(out, 'top_neurons', kind['top_caption'])}
{_neuron_rows(sections['top_neurons'])}
{kind['label_neurons']}"""
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>STC report: "
            f"{escape(context['dataset'])}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
            f"<body>{body}</body></html>\n")
