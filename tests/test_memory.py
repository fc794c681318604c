"""stc._memory: sizes, the budget rule (fewer workers, or a one-line refusal naming the knob)."""

from __future__ import annotations

import pytest

from stc._memory import MEMORY_LIMIT_ENV, MemoryBudgetError, available_bytes, parse_size, workers_within
from stc.probe import probe_bytes


@pytest.mark.parametrize("text, size", [("4GiB", 4 * 2**30), ("500MB", 500_000_000), ("1.5 gib", int(1.5 * 2**30)),
                                        ("1e9", 10**9), ("2048k", 2_048_000)])
def test_sizes_are_read_in_the_units_people_write(text, size):
    assert parse_size(text) == size


def test_a_limit_that_is_not_a_size_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "plenty")
    with pytest.raises(ValueError, match=f"{MEMORY_LIMIT_ENV} must be a size such as 4GiB"):
        available_bytes()


def test_the_limit_caps_what_the_machine_reports(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "100MB")
    assert available_bytes() == 100_000_000
    monkeypatch.delenv(MEMORY_LIMIT_ENV)
    assert available_bytes() is None or available_bytes() > 100_000_000  # this machine has more than that


def test_fewer_workers_run_when_all_would_not_fit_and_none_is_refused_naming_the_knob(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "100MB")  # 85 MB after the reserve
    assert workers_within(30e6, 4, stage="probes", knob="use fewer") == 2
    assert workers_within(10e6, 4, stage="probes", knob="use fewer") == 4
    assert workers_within(30e6, 4, shared=40e6, stage="probes", knob="use fewer") == 1
    with pytest.raises(MemoryBudgetError, match=r"^probes needs about 191 MiB but 95 MiB is available: use fewer"):
        workers_within(200e6, 1, stage="probes", knob="use fewer")


def test_a_multinomial_probe_is_estimated_with_its_class_blocks_and_one_vs_rest_without():
    binary = probe_bytes(5000, 4000, 1536, 2, "auto")
    assert probe_bytes(5000, 4000, 1536, 3, "auto") - binary == 3 * 8 * 1536**2 * (3**2 - 1)
    assert probe_bytes(5000, 4000, 1536, 52, "auto") == binary  # one-vs-rest: one binary problem at a time
