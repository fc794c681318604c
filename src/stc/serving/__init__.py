"""``stc serve``: a fitted model behind HTTP (FastAPI + uvicorn; the ``serve`` extra). The core never imports it."""

from ._app import ServeSettings, create_app
from ._batcher import MicroBatcher

__all__ = ["create_app", "ServeSettings", "MicroBatcher"]
