"""Micro-batching: requests that arrive while the model is busy (or within ``max_wait``) share one backbone pass.

One inference thread runs every pass: the backbone (and its hooks) is never used from two threads at once, and
the event loop stays free to accept requests while a pass runs.

Under overload the queue stays bounded: at most ``max_queue`` texts wait for a pass, and a request with a deadline
is not queued where it could not be answered in time (the passes before it, at the recent pass time, would take
longer than the time it has left). Such a request is refused at once (``Overloaded``: the app answers 503 with
``Retry-After``), so the texts already waiting are not slowed down, memory does not grow with the arrival rate, and a
client learns at once what it would otherwise learn from a 504 after waiting. A request given a deadline that passes before its
answer (``DeadlineExceeded``: 504), or whose client is gone, leaves the queue at once when its pass has not started
(its texts no longer count against ``max_queue``, and no pass computes them); once its pass has started, the pass
finishes and its answer is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

__all__ = ["MicroBatcher", "Overloaded", "DeadlineExceeded", "ClientGone"]

#: How often a waiting request checks whether its client is still there (seconds).
DISCONNECT_POLL_S = 0.05
#: Admission reads the slowest of this many latest passes (``MicroBatcher.expected_wait_s``).
RECENT_PASSES = 8


def _rows(result, start: int, stop: int):
    """Rows start:stop of a pass's result: an array, or a dict of arrays (one per task of a bundle)."""
    if isinstance(result, dict):
        return {name: values[start:stop] for name, values in result.items()}
    return result[start:stop]


class Overloaded(Exception):
    """The queue cannot take these texts: refused before any work (HTTP 503)."""

    def __init__(self, reason: str, retry_after_s: int):
        super().__init__(f"the server is overloaded: {reason}; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    """The request was not answered in time (HTTP 504)."""


class ClientGone(Exception):
    """The client disconnected before its answer: nothing is sent."""


@dataclass(eq=False)
class _Job:
    texts: list[str]
    future: asyncio.Future
    started: bool = False  # taken into a pass: from then on its texts are computed whatever happens
    withdrawn: bool = False  # left the queue before its pass: the worker skips it


class MicroBatcher:
    """Queue of requests; a worker gathers up to ``max_batch_size`` texts per pass, waiting at most ``max_wait_s``
    after the first request. A request is never split: one larger than the limit is a pass alone.
    ``max_batch_size=1`` is one request per pass (no micro-batching). ``max_queue`` (texts waiting, not yet in a
    pass; None: no limit) bounds the queue. ``on_pass(seconds, n_texts)`` is called after every pass (metrics)."""

    def __init__(self, run: Callable[[list[str]], np.ndarray], executor: Executor, *, max_batch_size: int,
                 max_wait_s: float, max_queue: int | None = None,
                 on_pass: Callable[[float, int], None] | None = None):
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait_s!r}")
        if max_queue is not None and (isinstance(max_queue, bool) or not isinstance(max_queue, int)
                                      or max_queue < 1):
            raise ValueError(f"max_queue must be a positive integer, got {max_queue!r}")
        self.run, self.executor = run, executor
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self.on_pass = on_pass
        self.passes = 0
        self.texts = 0
        self.waiting = 0  # texts queued and not yet in a pass
        self._pass_seconds_mean = 0.0  # a running mean, for Retry-After
        self._recent_passes: deque[float] = deque(maxlen=RECENT_PASSES)  # seconds of the last passes
        self._queue: asyncio.Queue | None = None
        self._carry: _Job | None = None
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

    def expected_wait_s(self, n_texts: int) -> float:
        """Seconds until ``n_texts`` more would be answered, about: the pass running now (counted whole) and the
        passes the waiting texts and these fill, each at the slowest of the last ``RECENT_PASSES`` passes (0 before
        the first pass). Not the mean: passes grow slower as overload fills them (and the event loop competes with
        the inference thread for the cores), and a request admitted on the mean of quieter times then times out
        (measured: 211 of 869 requests admitted and then answered 504 with the mean, benchmarks/README.md)."""
        passes = 1 + -(-(self.waiting + n_texts) // self.max_batch_size)
        return passes * max(self._recent_passes, default=0.0)

    def retry_after_s(self) -> int:
        """Seconds until the queue has room again, about: the passes its texts need, at the mean pass time."""
        passes = max(1, -(-self.waiting // self.max_batch_size))
        return max(1, round(passes * self._pass_seconds_mean))

    async def submit(self, texts: list[str], *, timeout_s: float | None = None,
                     disconnected: Callable[[], Awaitable[bool]] | None = None) -> np.ndarray:
        """Probabilities (len(texts), n_classes) of these texts, computed in some pass with other requests'.

        Raises ``Overloaded`` at once when the queue has no room for them, ``DeadlineExceeded`` when no answer came
        within ``timeout_s``, ``ClientGone`` when ``disconnected()`` says the client left; in the last two cases
        the texts leave the queue if their pass has not started."""
        if self._queue is None:
            raise RuntimeError("the micro-batcher is not started")
        if self.max_queue is not None and self.waiting + len(texts) > self.max_queue:
            raise Overloaded(f"{self.waiting} texts are waiting and {len(texts)} more would pass the queue's limit "
                             f"of {self.max_queue} texts (--max-queue)", self.retry_after_s())
        expected_wait = self.expected_wait_s(len(texts))
        if timeout_s is not None and expected_wait > timeout_s:
            raise Overloaded(f"{self.waiting} texts are waiting, about {expected_wait:.1f} s of passes before these "
                             f"would be answered, more than the {timeout_s:g} s a request may wait (--timeout-s)",
                             self.retry_after_s())
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self.waiting += len(texts)
        self._queue.put_nowait(job)
        try:
            return await self._answer(job, timeout_s, disconnected)
        finally:  # answered, refused, or the caller was cancelled: a job nobody waits for leaves the queue
            self._withdraw(job)

    async def _answer(self, job: _Job, timeout_s: float | None,
                      disconnected: Callable[[], Awaitable[bool]] | None) -> np.ndarray:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            poll = DISCONNECT_POLL_S if disconnected is not None else None
            wait = left if poll is None else (poll if left is None else min(poll, left))
            if wait is not None and wait <= 0:
                raise DeadlineExceeded(f"no answer within {timeout_s:g} s (--timeout-s)")
            done, _ = await asyncio.wait({job.future}, timeout=wait)
            if done:
                return job.future.result()
            if disconnected is not None and await disconnected():
                raise ClientGone("the client disconnected")

    def _withdraw(self, job: _Job) -> None:
        """A request no longer waited for: out of the queue when its pass has not started (else nothing)."""
        if not job.started and not job.withdrawn:
            job.withdrawn = True
            self.waiting -= len(job.texts)
        if not job.future.done():
            job.future.cancel()

    async def _next(self, timeout: float | None) -> _Job:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _next_live(self, timeout: float | None) -> _Job:
        """The next job that was not withdrawn (withdrawn ones are dropped here, their texts already uncounted)."""
        while True:
            job = await self._next(timeout)
            if not job.withdrawn:
                return job

    async def _gather(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        batch = [await self._next_live(None)]
        size = len(batch[0].texts)
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                job = await self._next_live(deadline - loop.time())
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if size + len(job.texts) > self.max_batch_size:
                self._carry = job
                break
            batch.append(job)
            size += len(job.texts)
        for job in batch:  # in the pass from now on: no longer waiting, computed whatever happens
            job.started = True
            self.waiting -= len(job.texts)
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self._gather() if not job.future.done()]
            if not batch:
                continue
            texts = [text for job in batch for text in job.texts]
            started = time.perf_counter()
            try:
                probabilities = await loop.run_in_executor(self.executor, self.run, texts)
            except Exception as error:  # every waiting request gets the error; the worker carries on
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            seconds = time.perf_counter() - started
            self._pass_seconds_mean = seconds if not self.passes else 0.9 * self._pass_seconds_mean + 0.1 * seconds
            self._recent_passes.append(seconds)
            self.passes += 1
            self.texts += len(texts)
            if self.on_pass is not None:
                self.on_pass(seconds, len(texts))
            start = 0
            for job in batch:
                if not job.future.done():
                    job.future.set_result(_rows(probabilities, start, start + len(job.texts)))
                start += len(job.texts)
