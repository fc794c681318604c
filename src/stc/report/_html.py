"""The self-contained HTML page: CSS, script and images inline, nothing fetched from anywhere."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

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


def _number(value, check: str | None = None, digits: int = 4) -> str:
    """A number for display; ``check`` tags it so a test can compare it with the model's JSON."""
    if value is None:
        return "—"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    attribute = f' data-check="{escape(check)}" data-value="{escape(repr(value))}"' if check else ""
    return f"<span{attribute}>{escape(text)}</span>"


def _card(name: str, value_html: str) -> str:
    return f'<div class="card"><div class="value">{value_html}</div><div class="name">{escape(name)}</div></div>'


def _image(path: Path, alt: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}">'


def _figure(out: Path, name: str, caption: str) -> str:
    if not (out / f"{name}.png").is_file():  # e.g. no labelled split to draw a confusion matrix from
        return ""
    return (f"<figure>{_image(out / f'{name}.png', name)}<figcaption>{caption} "
            f"<span class='label'>Data: <code>{escape(name)}.json</code>.</span></figcaption></figure>")


def _highlighted(text: str, peak: dict | None) -> str:
    if not peak or not peak.get("span"):
        suffix = f" <span class='label'>(peak token <code>{escape(peak['token'])}</code>)</span>" if peak else ""
        return escape(text) + suffix
    start, end = peak["span"]
    return f"{escape(text[:start])}<mark title='peak {peak['activation']:.3f}'>{escape(text[start:end])}</mark>" \
           f"{escape(text[end:])}"


def _neuron_rows(neurons: list[dict]) -> str:
    rows = []
    for neuron in neurons:
        weights = "<br>".join(f"<span class='{'pos' if w > 0 else 'neg'}'>{w:+.3f}</span> → {escape(str(label))}"
                              for label, w in neuron["weights"].items())
        texts = "".join(f"<li>{_highlighted(t['text'], t.get('peak'))} <span class='label'>[{escape(str(t['label']))}"
                        f", {t['activation']:.3f}]</span></li>" for t in neuron["top_texts"])
        rows.append(f"<tr><td class='num'>{neuron['rank']}</td><td><code data-check='neuron-{neuron['rank']}' "
                    f"data-value='{escape(neuron['neuron'])}'>{escape(neuron['neuron'])}</code></td>"
                    f"<td>{escape(neuron['representation'])}</td><td class='num'>{neuron['layer']}</td>"
                    f"<td>{escape(neuron['pooling'])}</td><td class='num'>{neuron['index']}</td>"
                    f"<td class='num'>{weights}</td><td><ol class='texts'>{texts}</ol></td></tr>")
    return ("<table><thead><tr><th>#</th><th>neuron</th><th>representation</th><th>layer</th><th>pooling</th>"
            "<th>index</th><th>weight</th><th>training texts that activate it most [label, activation]</th></tr>"
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
             f"{_number(curve['ece'], f'ece-{index}')}, log loss {_number(curve['log_loss'], f'log_loss-{index}')}"
             f", accuracy {_number(curve['accuracy'], f'accuracy-{index}')}"
             for index, curve in enumerate(data["curves"])]
    caption = (f"Predicted confidence (the probability of the predicted class) against the share of the "
               f"{escape(data['split'])} texts it got right, in each of {data['n_bins']} equal-width confidence "
               f"bins; on the diagonal a probability of 0.8 is right 8 times in 10. Below: texts per bin. "
               + "; ".join(parts) + ".")
    return "<h2>Can the probabilities be trusted: calibration</h2>" + _figure(out, "reliability", caption)


def _search_rows(search: dict | None, metric: str) -> str:
    """The search's best candidates as a table, the chosen one marked; nothing for a report without the section."""
    if not search:
        return ""
    rows = "".join(
        f"<tr{' class=chosen' if row['chosen'] else ''}><td>{row['rank']}{' ★' if row['chosen'] else ''}</td>"
        f"<td>{escape(row['kind'])}</td><td><code>{escape(row['reads'])}</code></td><td>{row['C']:g}</td>"
        f"<td>{row['n_features']:g}</td><td>{row['mean']:.4f}"
        + (f" ± {row['se']:.4f}" if row["se"] is not None else "") + "</td></tr>" for row in search["rows"])
    floor = (" The embedding floor chose the model: no readout beat the last layer's sentence embedding beyond "
             "the noise of the folds." if search.get("floor") else "")
    return (f"<h2>The search: its best candidates</h2><p>{search['n_candidates']} candidates scored on held-out "
            f"texts ({metric}; the record is <code>cv_results_</code>). ★ the chosen one: the simplest within one "
            f"standard error of the best, along its path.{floor}</p><table class='search'><tr><th>rank</th>"
            f"<th>readout</th><th>reads</th><th>C</th><th>features</th><th>held-out {metric}</th></tr>{rows}"
            f"</table>")


def render_page(out: Path, sections: dict, context: dict) -> str:
    """The whole page as one string, from the report's data sections and the PNGs already written to ``out``."""
    config = sections["configuration"]
    curve = sections["layer_curve"]
    embedding = curve.get("embedding")
    eta = sections["eta_curves"]
    metric = escape(config["metric"])
    split = sections.get("confusion_matrix", {}).get("split", "test")
    backbone = str(config["backbone"]).rstrip("/").rpartition("/")[2]
    cards = "".join([
        _card(f"held-out {config['metric']} of the chosen setting", _number(config["val_score"], "val_score")),
        _card(f"expected test {config['metric']} (± se)",
              "–" if config.get("expected_score") is None else
              f"{_number(config['expected_score'], 'expected_score')} ± {config['expected_score_se']:.3f}"),
        _card(f"{split} {config['metric']}", _number(config["test_score"], "test_score")),
        _card("neurons used", _number(config["n_features"], "n_features")),
        _card(f"exit layer (of {config['num_layers']})", _number(config["exit_layer"], "exit_layer")),
        _card("η", _number(config["eta"], "eta", 3)) if config["eta"] is not None else  # dense: no η, one array
        _card("readout (no η)", f"<span class='words'>{escape(config['readout_description'])}</span>"),
        _card("C", _number(config["C"], "C", 3)),
        _card(f"last-layer embedding, validation {config['metric']}",
              _number(config["embedding_val_score"], "embedding_val_score")),
    ])
    embedding_note = (f"The black star is the last-layer sentence-embedding baseline: {escape(embedding['source'])}."
                      if embedding else "No last-layer embedding score was given or fitted.")
    eta_note = f"<p class='note'>{escape(eta['note'])}</p>" if eta.get("note") else ""
    body = f"""
<h1>STC report: {escape(backbone)} on {escape(context['dataset'])}</h1>
<p class="sub">{escape(context['description'])}<br>Classes: {escape(', '.join(map(str, config['classes'])))};
training texts {context['n_train']}, validation {context['n_val']}, {split} {config['n_test'] or 0}. Generated by stc
{escape(context['stc_version'])}.</p>
<h2>The chosen configuration</h2>
<p>The chosen readout: <span data-check="readout_description">{escape(config['readout_description'])}</span>.
Representations <code>{escape(config['representations'])}</code>, poolings <code>{escape(config['poolings'])}</code>:
{config['n_features']} neurons from layers up to {config['exit_layer']}, so the forward pass stops after block
{config['exit_layer']} of {config['num_layers']}.</p>
<div class="cards">{cards}</div>
{_search_rows(sections.get('search'), metric)}
{_figure(out, 'confusion_matrix', f'The {split} split: rows true label, columns predicted.')}
{_reliability(out, sections.get('reliability'))}
<h2>Where the signal is: probe score by layer</h2>
<p>Each line is an L1 logistic probe trained on one layer's pooled activations ({metric} on validation).
{embedding_note}</p>
{_signal_summary(curve)}
{_figure(out, 'layer_curve', 'Probe validation score per layer, representation and pooling.')}
<h2>How many neurons are kept</h2>
{_figure(out, 'kept_per_layer', 'Left: the neurons the final model reads by layer, representation and pooling. '
         'Right: for the sparse leader of the exit-layer search (the chosen η, representations and poolings, unless '
         'a dense readout won), the neurons each layer adds.')}
{eta_note}
{_figure(out, 'kept_vs_eta', 'Total kept neurons at full depth for each representation × pooling set, across η.')}
{_figure(out, 'metric_vs_eta', 'Validation score against η at full depth (search stage 1, one C).')}
<h2>Early exit: the trade-off</h2>
{_figure(out, 'metric_vs_exit', 'Validation score by exit layer for each C of the final classifier (search stage 2, '
         'the representations, poolings and η of the sparse leader; dense and hybrid candidates as points of their '
         'own); '
         'the star is the chosen point.')}
<h2>The neurons the classifier listens to</h2>
<p>Ranked by the size of their weight on the standardised activation. Each neuron is named
<code>representation.Llayer.pooling.index</code>. For max-pooled neurons the token where the neuron peaked is
<mark>highlighted</mark>.</p>
{_figure(out, 'top_neurons', 'Weights of the top neurons (one bar per class row of the logistic regression).')}
{_neuron_rows(sections['top_neurons'])}
"""
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>STC report: "
            f"{escape(context['dataset'])}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
            f"<body>{body}</body></html>\n")
