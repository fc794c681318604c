"""The report in a real browser (headless Chromium): every image loads, the numbers shown are the saved model's.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it when absent). Without it the test skips locally
and fails under CI (``CI`` or ``STC_REQUIRE_BROWSER`` set), so CI cannot pass without having rendered the page.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

import stc
from stc.report import build_report

from ._helpers import FIGURES, SPARSE_FIT, fit_tiny, planted_dataset, save_tiny

_CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                   "--hide-scrollbars", "--mute-audio")


def _chromium() -> str:
    found = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
    if found is None:
        reason = "headless Chromium is not installed (apt-get install -y chromium); the browser check needs it"
        if os.environ.get("CI") or os.environ.get("STC_REQUIRE_BROWSER"):
            pytest.fail(reason + " and CI requires it")
        pytest.skip(reason)
    return found


class _Checks(HTMLParser):
    """Collects the <body> attributes and every element tagged ``data-check`` with its text."""

    def __init__(self):
        super().__init__()
        self.body: dict[str, str] = {}
        self.checks: dict[str, dict] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        if "data-check" in attributes:
            self.checks[attributes["data-check"]] = {"value": attributes.get("data-value"), "text": ""}
            self._open.append(attributes["data-check"])

    def handle_endtag(self, tag):
        if self._open and tag in ("span", "code"):
            self._open.pop()

    def handle_data(self, data):
        if self._open:
            self.checks[self._open[-1]]["text"] += data


def _run(chromium: str, profile, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
                          capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_chromium_with_every_image_and_the_models_numbers(tmp_path):
    chromium = _chromium()
    model_dir = tmp_path / "model"
    clf = fit_tiny(save_tiny(tmp_path / "tiny-bert"), tmp_path / "stores", 2, **SPARSE_FIT)
    clf.save(model_dir)
    clf = stc.load(model_dir)
    page = build_report(clf, planted_dataset(2), tmp_path / "report", top_k=5, texts_per_neuron=2)

    dom = _run(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()).stdout
    parsed = _Checks()
    parsed.feed(dom)
    # The page's own script, run by the browser after load, counted images with naturalWidth > 0.
    assert parsed.body.get("data-images-total") == str(len(FIGURES)), parsed.body
    assert parsed.body.get("data-images-loaded") == str(len(FIGURES)), parsed.body
    assert parsed.body.get("data-images-ok") == "true"

    saved = json.loads((model_dir / "stc_model.json").read_text())
    expected = {"val_score": saved["val_score"], "n_features": saved["configuration"]["n_features"],
                "exit_layer": saved["configuration"]["exit_layer"], "eta": saved["configuration"]["eta"],
                "C": saved["configuration"]["C"]}
    for name, value in expected.items():
        shown = parsed.checks[name]
        assert shown["value"] == repr(value), (name, shown, value)
        digits = 3 if name in ("eta", "C") else 4
        assert float(shown["text"]) == pytest.approx(round(value, digits) if isinstance(value, float) else value), name
    test_score = json.loads((page.parent / "configuration.json").read_text())["test_score"]
    assert float(parsed.checks["test_score"]["text"]) == pytest.approx(round(test_score, 4))
    neurons = [parsed.checks[f"neuron-{rank}"]["text"] for rank in range(1, 6)]
    assert all(name.rpartition(".")[0] in saved["kept_columns"] for name in neurons)
    assert neurons == [n["neuron"] for n in json.loads((page.parent / "top_neurons.json").read_text())]

    screenshot = tmp_path / "report.png"
    _run(chromium, tmp_path / "profile", "--window-size=1200,2400", f"--screenshot={screenshot}", page.as_uri())
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"report screenshot: {screenshot}")
