"""The pieces of the report's page that its sections share: numbers a test can check, cards, inline figures and
texts with their peak token highlighted."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

__all__ = ["number", "card", "image", "figure", "highlighted"]


def number(value, check: str | None = None, digits: int = 4) -> str:
    """A number for display; ``check`` tags it so a test can compare it with the model's JSON."""
    if value is None:
        return "—"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    attribute = f' data-check="{escape(check)}" data-value="{escape(repr(value))}"' if check else ""
    return f"<span{attribute}>{escape(text)}</span>"


def card(name: str, value_html: str) -> str:
    return f'<div class="card"><div class="value">{value_html}</div><div class="name">{escape(name)}</div></div>'


def image(path: Path, alt: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}">'


def figure(out: Path, name: str, caption: str) -> str:
    if not (out / f"{name}.png").is_file():  # e.g. no labelled split to draw a confusion matrix from
        return ""
    return (f"<figure>{image(out / f'{name}.png', name)}<figcaption>{caption} "
            f"<span class='label'>Data: <code>{escape(name)}.json</code>.</span></figcaption></figure>")


def highlighted(text: str, peak: dict | None) -> str:
    if not peak or not peak.get("span"):
        suffix = f" <span class='label'>(peak token <code>{escape(peak['token'])}</code>)</span>" if peak else ""
        return escape(text) + suffix
    start, end = peak["span"]
    return f"{escape(text[:start])}<mark title='peak {peak['activation']:.3f}'>{escape(text[start:end])}</mark>" \
           f"{escape(text[end:])}"
