"""Token-budget batching: a pure planner and a thread-safe ``MicroBatcher`` (TEI/Triton style).

The cost of a padded batch is ``rows * longest_row`` tokens, so texts are sorted by length and
cut into batches that stay under a token budget (and a row cap); callers restore input order.

``MicroBatcher`` lets many threads ``submit(text)`` and get a ``Future[Prediction]`` back. One
worker thread collects pending texts until the batch is full (token budget or row cap) or the
oldest pending text has waited ``max_delay_ms``, then runs the whole batch through ``predict``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import torch

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


def pad_batch(enc: Sequence[Sequence[int]], rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``rows`` (indices into ``enc``) right-padded with 0 to the longest, and the mask."""
    import torch  # only the model code needs this; the rest of the module is torch-free

    width = max(len(enc[i]) for i in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        ids[r, : len(enc[i])] = torch.tensor(enc[i])
        mask[r, : len(enc[i])] = 1
    return ids, mask


def plan_batches(lengths: Sequence[int], max_tokens: int, max_size: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first, each within the budget.

    A batch's padded cost is ``len(batch) * max(length in batch)``; a single text longer than
    the budget still gets a batch of its own. Every index appears exactly once.
    """
    if max_tokens < 1 or max_size < 1:
        raise ValueError("max_tokens and max_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(1, int(lengths[i]))
        width = max(longest, n)
        if current and (len(current) >= max_size or (len(current) + 1) * width > max_tokens):
            batches.append(current)
            current, width = [], n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


@dataclass
class _Pending(Generic[T]):
    text: str
    tokens: int
    enqueued: float
    future: Future[T] = field(default_factory=Future)


class MicroBatcher(Generic[T]):
    """Collects texts from many threads into token-budgeted batches run on one worker thread.

    ``predict`` maps a list of texts to one result per text (e.g. ``InferenceEngine.predict``);
    ``count_tokens`` gives each text's token count (e.g. ``InferenceEngine.count_tokens``).
    A batch is dispatched as soon as it is full, or when its oldest text has waited
    ``max_delay_ms``. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        predict: Callable[[list[str]], Sequence[T]],
        count_tokens: Callable[[list[str]], list[int]],
        *,
        max_batch_tokens: int = 8192,
        max_batch_size: int = 256,
        max_delay_ms: float = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._predict = predict
        self._count_tokens = count_tokens
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_delay_s = max(0.0, max_delay_ms / 1000.0)
        self._clock = clock
        self._queue: deque[_Pending[T]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.batches_run = 0
        self._worker = threading.Thread(target=self._run, name="finsent-microbatcher", daemon=True)
        self._worker.start()

    @classmethod
    def for_engine(cls, engine, settings) -> MicroBatcher:  # noqa: ANN001 - avoids importing torch here
        c = settings.classifier if hasattr(settings, "classifier") else settings
        return cls(
            engine.predict,
            engine.count_tokens,
            max_batch_tokens=c.max_batch_tokens,
            max_batch_size=c.max_batch_size,
            max_delay_ms=c.max_delay_ms,
        )

    # -- producer side ----------------------------------------------------------------------
    def submit(self, text: str) -> Future[T]:
        tokens = self._count_tokens([text])[0]
        item: _Pending[T] = _Pending(text=text, tokens=tokens, enqueued=self._clock())
        with self._cond:
            if self._closed:
                raise RuntimeError("MicroBatcher is closed")
            self._queue.append(item)
            self._cond.notify()
        return item.future

    def wake(self) -> None:
        """Make the worker re-check its deadline now (for injected clocks in tests)."""
        with self._cond:
            self._cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting texts, flush what is pending, and join the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._worker.join(timeout)

    def __enter__(self) -> MicroBatcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker side ------------------------------------------------------------------------
    def _full(self) -> bool:
        if len(self._queue) >= self.max_batch_size:
            return True
        longest = max(p.tokens for p in self._queue)
        return len(self._queue) * longest >= self.max_batch_tokens

    def _take_batch(self) -> list[_Pending[T]]:
        batch: list[_Pending[T]] = []
        longest = 0
        while self._queue and len(batch) < self.max_batch_size:
            nxt = self._queue[0]
            width = max(longest, nxt.tokens)
            if batch and (len(batch) + 1) * width > self.max_batch_tokens:
                break
            batch.append(self._queue.popleft())
            longest = width
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                # Wait until the batch is full, the oldest text's deadline passes, or we close.
                while not self._closed and not self._full():
                    remaining = self._queue[0].enqueued + self.max_delay_s - self._clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._take_batch()
            self._dispatch(batch)

    def _dispatch(self, batch: list[_Pending[T]]) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = list(self._predict([p.text for p in live]))
            if len(results) != len(live):
                raise RuntimeError(f"predict returned {len(results)} results for {len(live)} texts")
        except BaseException as err:  # noqa: BLE001 - every waiter must hear about it
            log.warning("microbatch_failed", size=len(live), error=str(err))
            for p in live:
                p.future.set_exception(err)
            return
        self.batches_run += 1
        for p, r in zip(live, results):
            p.future.set_result(r)
