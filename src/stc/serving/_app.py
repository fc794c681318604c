"""The HTTP face of a fitted model: ``POST /predict``, ``POST /explain``, ``GET /health``, ``GET /metadata``.

The model is loaded once, in the app's lifespan, through a ``Predictor`` (torch or ONNX: the app does not care).
Nothing in a request names a path. Bad requests get a 4xx answer with a one-line ``error``; nothing is logged as a
crash for them: malformed JSON 400, a body that is not JSON 415, too many or too long texts 413, an empty list,
an empty or non-string text or an unknown field 422.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from .._validation import check_texts
from ..head import plain_label
from ..predictor import Predictor
from ._batcher import MicroBatcher

__all__ = ["ServeSettings", "create_app", "PredictRequest", "PredictResponse", "ExplainRequest"]

_JSON_ROUTES = ("/predict", "/explain")


@dataclass(frozen=True)
class ServeSettings:
    """Request limits and micro-batching; ``max_batch_size=1`` turns micro-batching off (one request per pass)."""

    max_texts: int = 64
    max_chars: int = 10_000
    max_batch_size: int = 64
    max_wait_ms: float = 5.0

    def __post_init__(self):
        for name in ("max_texts", "max_chars", "max_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.max_wait_ms, (int, float)) and self.max_wait_ms >= 0):
            raise ValueError(f"max_wait_ms must be a number >= 0, got {self.max_wait_ms!r}")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr] = Field(min_length=1, description="the texts to classify (non-empty strings)")


class Prediction(BaseModel):
    label: StrictStr | bool | int | float
    probabilities: dict[str, float] = Field(description="class -> probability, in the model's class order")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(min_length=1)
    top_k: int = Field(default=10, ge=1, le=200)


class _ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _check_limits(texts: list[str], settings: ServeSettings) -> None:
    if len(texts) > settings.max_texts:
        raise _ClientError(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts} (--max-texts)")
    for index, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise _ClientError(413, f"texts[{index}] has {len(text)} characters; the limit is {settings.max_chars} "
                                    f"(--max-chars)")
    try:
        check_texts(texts, "texts")
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
                               max_wait_s=settings.max_wait_ms / 1000)
        await batcher.start()
        app.state.predictor, app.state.batcher, app.state.executor = predictor, batcher, executor
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=True)

    app = FastAPI(title="stc", summary="A Sparsify-then-Classify text classifier", lifespan=lifespan)

    @app.middleware("http")
    async def require_json(request: Request, call_next):
        if request.method == "POST" and request.url.path in _JSON_ROUTES:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return JSONResponse(status_code=415, content={
                    "error": f"content type must be application/json, got {content_type or 'none'!r}"})
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        status, message = _validation_message(error)
        return JSONResponse(status_code=status, content={"error": message})

    @app.exception_handler(_ClientError)
    async def client_error(request: Request, error: _ClientError):
        return JSONResponse(status_code=error.status, content={"error": error.message})

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        batcher = request.app.state.batcher
        return {"status": "ok", "runtime": request.app.state.predictor.runtime, "passes": batcher.passes,
                "texts": batcher.texts}

    @app.get("/metadata")
    async def metadata(request: Request) -> dict[str, Any]:
        return {**request.app.state.predictor.metadata(),
                "limits": {"max_texts": settings.max_texts, "max_chars": settings.max_chars},
                "micro_batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms}}

    @app.post("/predict", response_model=PredictResponse)
    async def predict(body: PredictRequest, request: Request) -> PredictResponse:
        """Per text: the label and the class probabilities (``STCClassifier.predict_proba``'s numbers)."""
        _check_limits(body.texts, settings)
        predictor = request.app.state.predictor
        try:
            probabilities = await request.app.state.batcher.submit(body.texts)
        except (ValueError, TypeError) as error:  # e.g. a text with no tokens for this tokenizer
            raise _ClientError(422, str(error).splitlines()[0]) from None
        classes = predictor.head.classes
        return PredictResponse(predictions=[
            Prediction(label=plain_label(classes[int(row.argmax())]),
                       probabilities={str(c): float(p) for c, p in zip(classes, row)}) for row in probabilities])

    @app.post("/explain")
    async def explain(body: ExplainRequest, request: Request) -> dict[str, Any]:
        """The ``stc explain`` content for one text: label, probabilities and each top neuron's contribution."""
        _check_limits([body.text], settings)
        predictor = request.app.state.predictor
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(request.app.state.executor,
                                              lambda: predictor.explain(body.text, top_k=body.top_k))
        except (ValueError, TypeError) as error:
            raise _ClientError(422, str(error).splitlines()[0]) from None

    return app
