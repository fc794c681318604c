"""Micro-batching: requests that arrive while the model is busy (or within ``max_wait``) share one backbone pass.

One inference thread runs every pass: the backbone (and its hooks) is never used from two threads at once, and
the event loop stays free to accept requests while a pass runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Queue of (texts, future); a worker gathers up to ``max_batch_size`` texts per pass, waiting at most
    ``max_wait_s`` after the first request. A request is never split: one larger than the limit is a pass alone.
    ``max_batch_size=1`` is one request per pass (no micro-batching)."""

    def __init__(self, run: Callable[[list[str]], np.ndarray], executor: Executor, *, max_batch_size: int,
                 max_wait_s: float):
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait_s!r}")
        self.run, self.executor = run, executor
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_s
        self.passes = 0
        self.texts = 0
        self._queue: asyncio.Queue | None = None
        self._carry: tuple[list[str], asyncio.Future] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._serve(), name="stc-micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Probabilities (len(texts), n_classes) of these texts, computed in some pass with other requests'."""
        if self._queue is None:
            raise RuntimeError("the micro-batcher is not started")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _next(self, timeout: float | None):
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _gather(self) -> list[tuple[list[str], asyncio.Future]]:
        loop = asyncio.get_running_loop()
        batch = [await self._next(None)]
        size = len(batch[0][0])
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                item = await self._next(deadline - loop.time())
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if size + len(item[0]) > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            size += len(item[0])
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(texts, future) for texts, future in await self._gather() if not future.done()]
            if not batch:
                continue
            texts = [text for request, _ in batch for text in request]
            try:
                probabilities = await loop.run_in_executor(self.executor, self.run, texts)
            except Exception as error:  # every waiting request gets the error; the worker carries on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.passes += 1
            self.texts += len(texts)
            start = 0
            for request, future in batch:
                if not future.done():
                    future.set_result(probabilities[start:start + len(request)])
                start += len(request)
