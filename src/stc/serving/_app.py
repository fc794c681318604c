"""The HTTP face of a fitted model: ``POST /predict``, ``POST /explain``, ``GET /health``, ``GET /metadata``,
``GET /metrics``.

The model is loaded once, in the app's lifespan, through a ``Predictor`` (torch or ONNX: the app does not care).
Nothing in a request names a path. Bad requests get a 4xx answer with a one-line ``error``; nothing is logged as a
crash for them: malformed JSON 400, a body that is not JSON 415, too many or too long texts 413, an empty list,
an empty or non-string text or an unknown field 422.

Under load (``stc.serving._batcher``): beyond ``max_queue`` waiting texts a request gets 503 with ``Retry-After`` at
once; a request not answered within ``timeout_s`` gets 504 and leaves the queue; a client that disconnects has
its queued texts dropped. With an ``api_key`` every route but ``/health`` needs ``Authorization: Bearer KEY``
(compared in constant time; 401 otherwise); the key is never logged nor shown.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from .._validation import check_inputs
from ..head import plain_label
from ..predictor import Predictor
from ._batcher import ClientGone, DeadlineExceeded, MicroBatcher, Overloaded
from ._metrics import CONTENT_TYPE_LATEST, ServerMetrics

__all__ = ["ServeSettings", "create_app", "PredictRequest", "PredictResponse", "ExplainRequest"]

_JSON_ROUTES = ("/predict", "/explain")
_KNOWN_ROUTES = ("/predict", "/explain", "/health", "/metadata", "/metrics", "/docs", "/openapi.json")


#: With no ``max_queue`` given, this many full passes may wait: a burst is absorbed, a flood is refused.
QUEUE_PASSES = 4


@dataclass(frozen=True, repr=False)
class ServeSettings:
    """Request limits, micro-batching and overload behaviour; ``max_batch_size=1`` turns micro-batching off (one
    request per pass). ``max_queue``: texts that may wait for a pass (None: ``QUEUE_PASSES`` x ``max_batch_size``,
    and at least ``max_texts``); ``timeout_s``: seconds a request may wait for its answer (None: no limit);
    ``api_key``: the bearer token every route but /health requires (None: open)."""

    max_texts: int = 64
    max_chars: int = 10_000
    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    max_queue: int | None = None
    timeout_s: float | None = 30.0
    api_key: str | None = None

    def __post_init__(self):
        for name in ("max_texts", "max_chars", "max_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.max_wait_ms, (int, float)) and self.max_wait_ms >= 0):
            raise ValueError(f"max_wait_ms must be a number >= 0, got {self.max_wait_ms!r}")
        if self.max_queue is None:
            object.__setattr__(self, "max_queue", max(QUEUE_PASSES * self.max_batch_size, self.max_texts))
        if isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) or self.max_queue < self.max_texts:
            raise ValueError(f"max_queue must be an integer >= max_texts ({self.max_texts}): a request of "
                             f"max_texts texts must fit, got {self.max_queue!r}")
        if self.timeout_s is not None and not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be a number > 0 or None, got {self.timeout_s!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or len(self.api_key) < 8
                                         or self.api_key != self.api_key.strip()):
            raise ValueError("api_key must be a string of at least 8 characters without surrounding spaces")

    def __repr__(self) -> str:  # never the key itself
        return (f"ServeSettings(max_texts={self.max_texts}, max_chars={self.max_chars}, max_batch_size="
                f"{self.max_batch_size}, max_wait_ms={self.max_wait_ms}, max_queue={self.max_queue}, timeout_s="
                f"{self.timeout_s}, api_key={'set' if self.api_key else None})")

    def public(self) -> dict:
        """What /metadata shows of the settings (whether a key is required, never the key)."""
        return {"limits": {"max_texts": self.max_texts, "max_chars": self.max_chars},
                "micro_batching": {"max_batch_size": self.max_batch_size, "max_wait_ms": self.max_wait_ms},
                "overload": {"max_queue": self.max_queue, "timeout_s": self.timeout_s},
                "auth": {"bearer_token_required": self.api_key is not None}}


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr] | None = Field(default=None, min_length=1,
                                          description="the texts to classify (non-empty strings)")
    pairs: list[tuple[StrictStr, StrictStr]] | None = Field(
        default=None, min_length=1, description="or, for a model fitted on text pairs, [text_a, text_b] pairs")

    @model_validator(mode="after")
    def one_kind(self) -> PredictRequest:
        if (self.texts is None) == (self.pairs is None):
            raise ValueError("give either 'texts' or 'pairs' (for a model fitted on text pairs), not both")
        return self

    def items(self) -> list:
        """The texts, or the pairs as (text_a, text_b) tuples."""
        return list(self.texts) if self.texts is not None else [tuple(pair) for pair in self.pairs]


class Prediction(BaseModel):
    label: StrictStr | bool | int | float
    probabilities: dict[str, float] = Field(description="class -> probability, in the model's class order")


class LabelSetPrediction(BaseModel):
    labels: list[StrictStr | bool | int | float] = Field(description="the labels whose probability reaches their "
                                                                     "threshold (a multi-label model)")
    probabilities: dict[str, float] = Field(description="label -> its probability, independent of the others'")


class PredictResponse(BaseModel):
    predictions: list[Prediction | LabelSetPrediction]


class TaskPredictions(BaseModel):
    tasks: dict[str, Prediction | LabelSetPrediction] = Field(
        description="task name -> its label (or labels) and probabilities (a bundle)")


class BundlePredictResponse(BaseModel):
    predictions: list[TaskPredictions]


def _prediction(head, row) -> Prediction | LabelSetPrediction:
    """One text's answer from its probabilities, labelled as the head labels them (the most probable class, or for
    a multi-label head every label at or above its threshold)."""
    probabilities = {str(c): float(p) for c, p in zip(head.classes, row)}
    predicted = head.labels_from_probabilities(np.asarray(row)[None, :])
    if head.kind == "multilabel":
        return LabelSetPrediction(labels=head.label_sets(predicted)[0], probabilities=probabilities)
    return Prediction(label=plain_label(predicted[0]), probabilities=probabilities)


def _answer(predictor, probabilities, tasks: str | None) -> PredictResponse | BundlePredictResponse:
    """The response of one request: per text its label and probabilities, or for a bundle each task's (the tasks
    ``tasks`` names, comma-separated, or all)."""
    if not isinstance(probabilities, dict):
        if tasks is not None:
            raise _ClientError(422, "tasks: this server holds one model, not a bundle of tasks")
        return PredictResponse(predictions=[_prediction(predictor.head, row) for row in probabilities])
    names = list(probabilities) if tasks is None else [name.strip() for name in tasks.split(",") if name.strip()]
    unknown = [name for name in names if name not in probabilities]
    if unknown or not names:
        raise _ClientError(422, f"tasks: unknown task(s) {unknown}; this bundle has {list(probabilities)}")
    return BundlePredictResponse(predictions=[
        TaskPredictions(tasks={name: _prediction(predictor.heads[name], probabilities[name][i])
                               for name in names}) for i in range(len(next(iter(probabilities.values()))))])


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr | None = Field(default=None, min_length=1)
    pair: tuple[StrictStr, StrictStr] | None = Field(default=None, description="for a model fitted on text pairs")
    top_k: int = Field(default=10, ge=1, le=200)

    @model_validator(mode="after")
    def one_kind(self) -> ExplainRequest:
        if (self.text is None) == (self.pair is None):
            raise ValueError("give either 'text' or 'pair' (for a model fitted on text pairs), not both")
        return self

    def item(self):
        return self.text if self.text is not None else tuple(self.pair)


class _ClientError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _check_limits(texts: list, settings: ServeSettings, pairs: bool = False) -> None:
    """The request's size limits (a pair counts the characters of both its texts), then its texts as the model
    reads them (single texts, or pairs for a model fitted on pairs)."""
    if len(texts) > settings.max_texts:
        raise _ClientError(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts} (--max-texts)")
    for index, text in enumerate(texts):
        length = sum(map(len, text)) if isinstance(text, tuple) else len(text)
        if length > settings.max_chars:
            raise _ClientError(413, f"texts[{index}] has {length} characters; the limit is {settings.max_chars} "
                                    f"(--max-chars)")
    try:
        check_inputs(texts, "pairs" if pairs else "texts", pairs=pairs)
    except (ValueError, TypeError) as error:
        raise _ClientError(422, str(error)) from None


def _validation_message(error: RequestValidationError) -> tuple[int, str]:
    errors = error.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON: {first.get('ctx', {}).get('error', first.get('msg', ''))}"
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return 422, f"{location}: {first.get('msg', 'invalid request')}"


def create_app(load_predictor: Callable[[], Predictor], settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app; ``load_predictor`` runs once at start-up (the model directory is fixed there)."""
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        predictor = load_predictor()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stc-inference")
        batcher = MicroBatcher(predictor.predict_proba, executor, max_batch_size=settings.max_batch_size,
                               max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.max_queue,
                               on_pass=metrics.observe_pass)
        await batcher.start()
        app.state.predictor, app.state.batcher, app.state.executor = predictor, batcher, executor
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=True)

    app = FastAPI(title="stc", summary="A Sparsify-then-Classify text classifier", lifespan=lifespan)
    metrics = ServerMetrics(lambda: app.state.batcher.waiting if hasattr(app.state, "batcher") else 0)
    app.state.metrics = metrics
    _add_middleware(app, settings, metrics)
    _add_routes(app, settings, metrics)
    return app


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


def _authorised(request: Request, api_key: str) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def _add_middleware(app: FastAPI, settings: ServeSettings, metrics: ServerMetrics) -> None:
    """The key check (outermost), the JSON content-type check, and the request count by route and status."""

    @app.middleware("http")
    async def require_json(request: Request, call_next):
        if request.method == "POST" and request.url.path in _JSON_ROUTES:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return _error(415, f"content type must be application/json, got {content_type or 'none'!r}")
        return await call_next(request)

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        request.state.arrived = time.monotonic()  # the outermost step: --timeout-s counts from here
        if settings.api_key is not None and request.url.path != "/health" \
                and not _authorised(request, settings.api_key):
            metrics.refused("unauthorized")
            response = _error(401, "a valid 'Authorization: Bearer <key>' header is required (--api-key)",
                              {"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        route = request.url.path if request.url.path in _KNOWN_ROUTES else "other"
        metrics.requests.labels(route=route, status=str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        status, message = _validation_message(error)
        return _error(status, message)

    @app.exception_handler(_ClientError)
    async def client_error(request: Request, error: _ClientError):
        return _error(error.status, error.message, error.headers)


def _time_left(request: Request, settings: ServeSettings) -> float | None:
    """Seconds the request may still wait (``--timeout-s`` from its arrival: parsing and validation count), or
    None without a timeout; DeadlineExceeded when nothing is left."""
    if settings.timeout_s is None:
        return None
    left = settings.timeout_s - (time.monotonic() - request.state.arrived)
    if left <= 0:
        raise DeadlineExceeded(f"no answer within {settings.timeout_s:g} s (--timeout-s)")
    return left


def _add_routes(app: FastAPI, settings: ServeSettings, metrics: ServerMetrics) -> None:
    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        batcher = request.app.state.batcher
        return {"status": "ok", "runtime": request.app.state.predictor.runtime, "passes": batcher.passes,
                "texts": batcher.texts, "queue_texts": batcher.waiting}

    @app.get("/metadata")
    async def metadata(request: Request) -> dict[str, Any]:
        return {**request.app.state.predictor.metadata(), **settings.public()}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(content=metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/predict", response_model=PredictResponse | BundlePredictResponse)
    async def predict(body: PredictRequest, request: Request,
                      tasks: str | None = None) -> PredictResponse | BundlePredictResponse:
        """Per text: the label and the class probabilities (``STCClassifier.predict_proba``'s numbers); for a
        bundle, each task's, or those of ``?tasks=a,b``."""
        predictor, batcher = request.app.state.predictor, request.app.state.batcher
        items = body.items()
        _check_limits(items, settings, getattr(predictor, "pairs", False))
        try:
            probabilities = await batcher.submit(items, timeout_s=_time_left(request, settings),
                                                 disconnected=request.is_disconnected)
        except (ValueError, TypeError) as error:  # e.g. a text with no tokens for this tokenizer
            raise _ClientError(422, str(error).splitlines()[0]) from None
        except Overloaded as error:
            metrics.refused("overloaded")
            raise _ClientError(503, str(error), {"Retry-After": str(error.retry_after_s)}) from None
        except DeadlineExceeded as error:
            metrics.refused("timeout")
            raise _ClientError(504, str(error)) from None
        except ClientGone as error:  # nobody reads the answer; 499 is what proxies log for it
            metrics.refused("disconnected")
            raise _ClientError(499, str(error)) from None
        return _answer(predictor, probabilities, tasks)

    @app.post("/explain")
    async def explain(body: ExplainRequest, request: Request) -> dict[str, Any]:
        """The ``stc explain`` content for one text: label, probabilities and each top neuron's contribution."""
        predictor = request.app.state.predictor
        _check_limits([body.item()], settings, getattr(predictor, "pairs", False))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(request.app.state.executor,
                                              lambda: predictor.explain(body.item(), top_k=body.top_k))
        except (ValueError, TypeError) as error:
            raise _ClientError(422, str(error).splitlines()[0]) from None
