"""``GET /metrics``: what a server did, in Prometheus' text format (prometheus_client, one registry per app).

Counted: requests by route and status, texts computed, passes and their seconds, refusals by reason (overloaded:
503, timeout: 504, disconnected: the client left before its answer, unauthorized: 401), and the texts waiting in
the queue now.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServerMetrics", "REFUSAL_REASONS", "CONTENT_TYPE_LATEST"]

REFUSAL_REASONS = ("overloaded", "timeout", "disconnected", "unauthorized")
#: Pass seconds: from a one-text pass of a small encoder (~10 ms) to a full batch of a large decoder on CPU.
_PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """The counters of one app; ``queue_texts`` is read when /metrics is asked for."""

    def __init__(self, queue_texts: Callable[[], float]):
        self.registry = CollectorRegistry()
        self.requests = Counter("stc_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.texts = Counter("stc_texts", "texts classified (in a backbone pass)", registry=self.registry)
        self.refusals = Counter("stc_refusals", "requests refused or dropped, by reason", ["reason"],
                                registry=self.registry)
        for reason in REFUSAL_REASONS:  # every reason present from the start, at 0
            self.refusals.labels(reason=reason)
        self.pass_seconds = Histogram("stc_pass_seconds", "seconds of one backbone pass (features and head)",
                                      buckets=_PASS_BUCKETS, registry=self.registry)
        self.queue = Gauge("stc_queue_texts", "texts waiting for a pass now", registry=self.registry)
        self.queue.set_function(queue_texts)

    def observe_pass(self, seconds: float, n_texts: int) -> None:
        self.pass_seconds.observe(seconds)
        self.texts.inc(n_texts)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason=reason).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
