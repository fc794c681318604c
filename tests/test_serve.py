"""stc serve: every route, every bad request's status and message, micro-batching, and a real uvicorn process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from stc.predictor import TorchPredictor
from stc.serving import MicroBatcher, ServeSettings, create_app

from ._helpers import NEW_TEXTS, fit_tiny, save_tiny

LIMITS = ServeSettings(max_texts=4, max_chars=300, max_batch_size=8, max_wait_ms=2.0)


@pytest.fixture(scope="module")
def clf(tokenizer, tmp_path_factory):
    model_dir = save_tiny(tmp_path_factory.mktemp("tiny-bert"), tokenizer=tokenizer)
    return fit_tiny(model_dir, tmp_path_factory.mktemp("stores"), 2)


@pytest.fixture(scope="module")
def client(clf):
    with TestClient(create_app(lambda: TorchPredictor(clf), LIMITS)) as test_client:
        yield test_client


def _probabilities(response_json, classes) -> np.ndarray:
    return np.array([[p["probabilities"][str(c)] for c in classes] for p in response_json["predictions"]])


def test_predict_gives_labels_and_predict_proba_numbers(client, clf):
    texts = NEW_TEXTS[:4]
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200
    expected = clf.predict_proba(texts)
    np.testing.assert_allclose(_probabilities(response.json(), clf.classes_), expected, atol=1e-5, rtol=0)
    assert [p["label"] for p in response.json()["predictions"]] == clf.classes_[expected.argmax(1)].tolist()


def test_explain_gives_the_decision_split_by_neuron(client, clf):
    response = client.post("/explain", json={"text": NEW_TEXTS[0], "top_k": 3})
    assert response.status_code == 200
    body = response.json()
    expected = clf.explain(NEW_TEXTS[0], top_k=3)
    assert body["label"] == expected["label"] and len(body["contributions"]) == 3
    assert [c["neuron"] for c in body["contributions"]] == [c["neuron"] for c in expected["contributions"]]
    np.testing.assert_allclose(body["probabilities"][str(clf.classes_[1])],
                               clf.predict_proba([NEW_TEXTS[0]])[0, 1], atol=1e-5)


def test_health_and_metadata(client, clf):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["runtime"] == "torch"
    metadata = client.get("/metadata").json()
    assert metadata["classes"] == clf.classes_.tolist()
    assert metadata["exit_layer"] == clf.exit_layer_ and metadata["configuration"] == clf.configuration_
    assert metadata["n_kept_neurons"] == len(clf.kept_neurons_)
    assert metadata["backbone_sha256"] == clf.backbone_["weights_sha256"]
    assert metadata["backbone_name"] == clf.backbone_["name"] and metadata["stc_version"]
    assert metadata["limits"] == {"max_texts": 4, "max_chars": 300}


def test_openapi_schema_names_the_routes_and_the_request_model(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/explain", "/health", "/metadata"} <= set(schema["paths"])
    assert "PredictRequest" in schema["components"]["schemas"]


@pytest.mark.parametrize("route, body, status, message", [
    ("/predict", {"texts": []}, 422, "texts: List should have at least 1 item"),
    ("/predict", {"texts": ["fine", 3]}, 422, "texts.1: Input should be a valid string"),
    ("/predict", {"texts": ["fine", ""]}, 422, "texts[1] is empty or whitespace only"),
    ("/predict", {"texts": ["fine", "   "]}, 422, "texts[1] is empty or whitespace only"),
    ("/predict", {"texts": "one text"}, 422, "texts: Input should be a valid list"),
    ("/predict", {}, 422, "give either 'texts' or 'pairs'"),
    ("/predict", {"texts": ["a"], "path": "/etc/passwd"}, 422, "path: Extra inputs are not permitted"),
    ("/predict", {"texts": ["a"] * 5}, 413, "5 texts in one request; the limit is 4"),
    ("/predict", {"texts": ["a", "x" * 301]}, 413, "texts[1] has 301 characters; the limit is 300"),
    ("/explain", {"text": ""}, 422, "text: String should have at least 1 character"),
    ("/explain", {"text": 5}, 422, "text: Input should be a valid string"),
    ("/explain", {"text": "x" * 301}, 413, "texts[0] has 301 characters"),
    ("/explain", {"text": "fine", "top_k": 0}, 422, "top_k: Input should be greater than or equal to 1"),
])
def test_bad_requests_get_a_4xx_and_a_message(client, route, body, status, message):
    response = client.post(route, json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.mark.parametrize("route", ["/predict", "/explain"])
def test_malformed_json_is_a_400(client, route):
    response = client.post(route, content=b'{"texts": ["a",', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_a_415(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=b'{"texts": ["a"]}', headers=headers)
    assert response.status_code == 415
    assert "content type must be application/json" in response.json()["error"]


def test_a_text_the_model_refuses_is_a_422_not_a_crash(clf):
    class NoTokens(TorchPredictor):  # what a tokenizer without special tokens answers for a text it cannot read
        def predict_proba(self, texts):
            raise ValueError("text 0 has no tokens for this tokenizer; remove empty texts")

    with TestClient(create_app(lambda: NoTokens(clf), LIMITS)) as test_client:
        response = test_client.post("/predict", json={"texts": ["\u200b"]})
        assert response.status_code == 422
        assert "no tokens" in response.json()["error"]
        assert test_client.post("/predict", json={"texts": ["x"]}).status_code == 422  # the server carries on


def test_a_server_leaves_one_core_to_its_event_loop():
    from stc.serving._cli import default_threads

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_threads() == max(1, cores - 1)


def test_settings_name_the_bad_value():
    with pytest.raises(ValueError, match="max_texts must be a positive integer, got 0"):
        ServeSettings(max_texts=0)


def _run(coroutine):
    return asyncio.run(coroutine)


def test_micro_batcher_gathers_concurrent_requests_and_routes_each_answer():
    passes = []

    def run(texts):
        passes.append(len(texts))
        time.sleep(0.02)
        return np.array([[float(len(t)), 1.0] for t in texts])

    async def scenario(max_batch_size):
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch_size=max_batch_size, max_wait_s=0.01)
            await batcher.start()
            requests = [["x" * (i + 1)] * (1 + i % 3) for i in range(12)]
            answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
            await batcher.stop()
            return requests, answers

    requests, answers = _run(scenario(8))
    for request, answer in zip(requests, answers):
        assert answer[:, 0].tolist() == [float(len(t)) for t in request]
    assert sum(passes) == 24 and len(passes) < 12 and max(passes) <= 8
    passes.clear()
    _run(scenario(1))  # one request per pass
    assert len(passes) == 12


def test_micro_batcher_gives_every_waiting_request_the_error_and_carries_on():
    calls = []

    def run(texts):
        calls.append(texts)
        if "bad" in texts:
            raise ValueError("text 'bad' refused")
        return np.ones((len(texts), 2))

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, max_batch_size=1, max_wait_s=0)
            await batcher.start()
            results = await asyncio.gather(batcher.submit(["bad"]), batcher.submit(["good"]),
                                           return_exceptions=True)
            await batcher.stop()
            return results

    bad, good = _run(scenario())
    assert isinstance(bad, ValueError) and good.shape == (1, 2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_real_server_answers_concurrent_requests(clf, tmp_path):
    clf.save(tmp_path / "model")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src") + os.pathsep +
           os.environ.get("PYTHONPATH", "")}
    server = subprocess.Popen([sys.executable, "-m", "stc", "serve", str(tmp_path / "model"), "--port", str(port),
                               "--device", "cpu", "--log-level", "warning", "--threads", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"the server exited: {server.stdout.read()}"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 120 s"
            time.sleep(0.2)
        requests = [NEW_TEXTS[i % 4:i % 4 + 1 + i % 3] for i in range(24)]
        with httpx.Client(base_url=base, timeout=60) as http, ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda texts: http.post("/predict", json={"texts": texts}), requests))
            assert http.post("/predict", content=b"{", headers={"content-type": "application/json"}
                             ).status_code == 400
            health = http.get("/health").json()
        for texts, response in zip(requests, responses):
            assert response.status_code == 200
            np.testing.assert_allclose(_probabilities(response.json(), clf.classes_), clf.predict_proba(texts),
                                       atol=1e-5, rtol=0)
        assert health["texts"] == sum(len(t) for t in requests) and health["passes"] <= len(requests)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
    assert "1 inference thread;" in output


def test_serve_with_a_bad_model_directory_is_a_one_line_error(tmp_path, capsys):
    from stc.cli import main

    assert main(["serve", str(tmp_path), "--threads", "0"]) == 2
    assert "threads must be a positive integer, got 0" in capsys.readouterr().err

    assert main(["serve", str(tmp_path), "--port", str(_free_port())]) == 2
    assert "stc_model.json is missing" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--runtime", "onnx"]) == 2
    assert "stc_onnx.json is missing" in capsys.readouterr().err
