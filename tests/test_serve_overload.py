"""stc serve under load and behind a key: a bounded queue (503 + Retry-After at once), deadlines (504, the texts
leave the queue), dropped disconnected clients, bearer-key access on every route but /health, and /metrics.

The model is a stand-in whose passes block until the test lets them go, so every state of the queue is reached on
purpose, not by timing luck."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stc.head import LinearHead
from stc.serving import MicroBatcher, ServeSettings, create_app
from stc.serving._batcher import ClientGone, DeadlineExceeded, Overloaded

KEY = "s3cret-key-for-tests"


class GatedPredictor:
    """Two classes; each pass waits until ``gate`` is set, and records the texts it computed."""

    runtime = "gated"

    def __init__(self):
        self.gate = threading.Event()
        self.computed: list[str] = []
        # a real head over one (unused) feature: the app labels the probabilities through it
        self.head = LinearHead(classes=np.array(["no", "yes"]), mean=np.zeros(1), scale=np.ones(1),
                               coef=np.zeros((1, 1)), intercept=np.zeros(1))

    def predict_proba(self, texts):
        assert self.gate.wait(timeout=30), "the test never opened the gate"
        self.computed += texts
        return np.tile([0.25, 0.75], (len(texts), 1))

    def explain(self, text, *, top_k=10):
        return {"text": text, "label": "yes"}

    def metadata(self):
        return {"runtime": self.runtime, "classes": ["no", "yes"]}


def _wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server never reached the expected state"
        time.sleep(0.01)


def _metric(client, name: str, headers: dict | None = None, **labels) -> float:
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in client.get("/metrics", headers=headers or {}).text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{wanted} not in /metrics")


def test_a_full_queue_refuses_at_once_with_503_and_retry_after_and_serves_the_rest():
    predictor = GatedPredictor()
    settings = ServeSettings(max_texts=2, max_batch_size=2, max_wait_ms=0, max_queue=4, timeout_s=30)
    with TestClient(create_app(lambda: predictor, settings)) as client, ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.post, "/predict", json={"texts": ["a", "b"]})  # in the (blocked) pass
        _wait_until(lambda: client.get("/health").json()["queue_texts"] == 0 and first.running())
        queued = [pool.submit(client.post, "/predict", json={"texts": [f"q{i}", f"r{i}"]}) for i in range(2)]
        _wait_until(lambda: client.get("/health").json()["queue_texts"] == 4)
        started = time.monotonic()
        refused = client.post("/predict", json={"texts": ["one more"]})
        assert time.monotonic() - started < 2.0  # at once, not after the queue drained
        assert refused.status_code == 503 and "--max-queue" in refused.json()["error"]
        assert int(refused.headers["Retry-After"]) >= 1
        predictor.gate.set()
        answers = [first.result(timeout=30)] + [future.result(timeout=30) for future in queued]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        assert answers[1].json()["predictions"][0] == {"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}}
        assert sorted(predictor.computed) == sorted(["a", "b", "q0", "r0", "q1", "r1"])  # "one more" never ran
        assert _metric(client, "stc_refusals_total", reason="overloaded") == 1.0
        assert _metric(client, "stc_requests_total", route="/predict", status="503") == 1.0
        assert _metric(client, "stc_texts_total") == 6.0 and _metric(client, "stc_queue_texts") == 0.0


def test_a_request_past_its_deadline_gets_504_and_its_texts_leave_the_queue():
    predictor = GatedPredictor()
    settings = ServeSettings(max_texts=2, max_batch_size=2, max_wait_ms=0, max_queue=4, timeout_s=0.5)
    with TestClient(create_app(lambda: predictor, settings)) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/predict", json={"texts": ["in the pass"]})
        _wait_until(lambda: first.running() and client.get("/health").json()["queue_texts"] == 0)
        late = client.post("/predict", json={"texts": ["waiting", "too long"]})  # queued behind the blocked pass
        assert late.status_code == 504 and "--timeout-s" in late.json()["error"]
        assert client.get("/health").json()["queue_texts"] == 0  # gone from the queue while the pass still runs
        predictor.gate.set()
        assert first.result(timeout=30).status_code == 504  # its pass had started: computed, the answer dropped
        _wait_until(lambda: client.get("/health").json()["passes"] == 1)
        time.sleep(0.1)
        assert predictor.computed == ["in the pass"]  # the late request's texts were never computed
        assert _metric(client, "stc_refusals_total", reason="timeout") == 2.0


def test_a_disconnected_client_has_its_queued_texts_dropped():
    computed, gate = [], threading.Event()

    def run(texts):
        gate.wait(timeout=30)
        computed.extend(texts)
        return np.ones((len(texts), 2))

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch_size=1, max_wait_s=0, max_queue=10)
            await batcher.start()
            first = asyncio.create_task(batcher.submit(["first"]))
            await asyncio.sleep(0.05)  # the first text is in the (blocked) pass
            gone = asyncio.Event()

            async def disconnected():
                return gone.is_set()

            leaving = asyncio.create_task(batcher.submit(["leaves", "early"], disconnected=disconnected))
            await asyncio.sleep(0.05)
            assert batcher.waiting == 2
            gone.set()
            with pytest.raises(ClientGone):
                await leaving
            assert batcher.waiting == 0
            gate.set()
            await first
            after = await batcher.submit(["after"])
            await batcher.stop()
            return after

    assert _run(scenario()).shape == (1, 2)
    assert computed == ["first", "after"]


def test_the_batcher_refuses_beyond_its_queue_and_a_cancelled_or_late_request_leaves_it():
    gate, computed = threading.Event(), []

    def run(texts):
        gate.wait(timeout=30)
        computed.extend(texts)
        return np.ones((len(texts), 2))

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch_size=2, max_wait_s=0, max_queue=3)
            await batcher.start()
            running = asyncio.create_task(batcher.submit(["a", "b"]))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(batcher.submit(["c", "d", "e"]))
            await asyncio.sleep(0.05)
            with pytest.raises(Overloaded, match="3 texts are waiting"):
                await batcher.submit(["f"])
            waiting.cancel()  # a caller that goes away (its task cancelled) frees its place at once
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert batcher.waiting == 0
            with pytest.raises(DeadlineExceeded):
                await batcher.submit(["g"], timeout_s=0.05)
            assert batcher.waiting == 0
            gate.set()
            await running
            await batcher.stop()

    _run(scenario())
    assert computed == ["a", "b"]


def test_a_request_that_could_not_be_answered_in_time_is_refused_at_once():
    """Once passes are known to take ~0.2 s, a request behind a running pass and a full batch cannot be answered in
    0.3 s: 503 now, not 504 later; without a deadline it queues."""
    gate = threading.Event()

    def run(texts):
        time.sleep(0.2)
        gate.wait(timeout=30)
        return np.ones((len(texts), 2))

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch_size=2, max_wait_s=0, max_queue=100)
            await batcher.start()
            gate.set()
            await batcher.submit(["warm"])  # one pass: the mean pass time is now ~0.2 s
            gate.clear()
            running = asyncio.create_task(batcher.submit(["a", "b"]))
            await asyncio.sleep(0.05)
            queued = asyncio.create_task(batcher.submit(["c", "d"]))
            await asyncio.sleep(0.05)
            assert 0.5 < batcher.expected_wait_s(1) < 1.5  # the running pass, a full one, then this
            started = time.monotonic()
            with pytest.raises(Overloaded, match="--timeout-s"):
                await batcher.submit(["e"], timeout_s=0.3)
            assert time.monotonic() - started < 0.1
            patient = asyncio.create_task(batcher.submit(["f"], timeout_s=30))
            await asyncio.sleep(0.05)
            assert batcher.waiting == 3
            gate.set()
            answers = await asyncio.gather(running, queued, patient)
            await batcher.stop()
            return answers

    assert [answer.shape for answer in _run(scenario())] == [(2, 2), (2, 2), (1, 2)]


def _run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize("method, route, body", [("get", "/metadata", None), ("get", "/metrics", None),
                                                 ("post", "/predict", {"texts": ["x"]}),
                                                 ("post", "/explain", {"text": "x"}),
                                                 ("get", "/openapi.json", None)])
def test_every_route_but_health_needs_the_key(method, route, body):
    predictor = GatedPredictor()
    predictor.gate.set()
    with TestClient(create_app(lambda: predictor, ServeSettings(api_key=KEY))) as client:
        call = getattr(client, method)
        options = {"json": body} if body is not None else {}
        for headers in ({}, {"Authorization": "Bearer wrong-key-of-same-size"}, {"Authorization": KEY},
                        {"Authorization": f"Basic {KEY}"}):
            refused = call(route, headers=headers, **options)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            assert "Authorization: Bearer" in refused.json()["error"] and KEY not in refused.text
        assert call(route, headers={"Authorization": f"Bearer {KEY}"}, **options).status_code == 200
        assert client.get("/health").status_code == 200  # for load balancers, without a key


def test_the_key_is_never_shown():
    predictor = GatedPredictor()
    settings = ServeSettings(api_key=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.public())
    with TestClient(create_app(lambda: predictor, settings)) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        metadata = client.get("/metadata", headers=auth)
        assert metadata.json()["auth"] == {"bearer_token_required": True} and KEY not in metadata.text
        assert KEY not in client.get("/metrics", headers=auth).text
        client.get("/metadata")  # refused: counted
        assert _metric(client, "stc_refusals_total", auth, reason="unauthorized") == 1.0


def test_settings_refuse_a_queue_smaller_than_a_request_and_a_short_key():
    with pytest.raises(ValueError, match="max_queue must be an integer >= max_texts"):
        ServeSettings(max_texts=8, max_queue=4)
    with pytest.raises(ValueError, match="api_key"):
        ServeSettings(api_key="short")
    with pytest.raises(ValueError, match="timeout_s"):
        ServeSettings(timeout_s=0)
    assert ServeSettings(max_batch_size=16, max_texts=4).max_queue == 64  # 4 passes' worth


def test_admission_reads_the_slowest_recent_pass_not_the_mean():
    """Nine quick passes then a slow one: the mean (about 0.06 s) would admit a request that the slow passes of an
    overload cannot answer in time; the slowest recent pass (0.4 s) refuses it."""
    durations = iter([0.01] * 9 + [0.4])

    def run(texts):
        time.sleep(next(durations))
        return np.ones((len(texts), 2))

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch_size=1, max_wait_s=0, max_queue=100)
            await batcher.start()
            for i in range(10):
                await batcher.submit([f"t{i}"])
            assert batcher._pass_seconds_mean < 0.1  # what admission read before
            wait = batcher.expected_wait_s(1)
            with pytest.raises(Overloaded, match="--timeout-s"):
                await batcher.submit(["late"], timeout_s=0.5)
            await batcher.stop()
            return wait

    assert 0.7 < _run(scenario()) < 1.0  # the running pass and this one, 0.4 s each
