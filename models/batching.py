"""Token-budget batching, one implementation for the whole classifier path.

The cost of a padded batch is ``rows * longest_row`` tokens.

* :func:`plan_batches`: inside the engine, a request's texts sorted by length and cut into
  micro-batches under a token budget and row cap (callers restore input order);
  :func:`spread_batches` splits them further so parallel workers all get one;
* :class:`AdaptiveBatcher`: in front of the engine, the classify stage's queue of stories: when
  to run a batch (full, backlog, or waiting longer would break the latency target) and which
  stories go in it (FIFO under the same budget).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import torch

import numpy as np

T = TypeVar("T")


def pad_rows(enc: Sequence[Sequence[int]], rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``rows`` (indices into ``enc``) right-padded with 0 to the longest, and the
    mask, as int64 arrays (what both the torch and the ONNX Runtime backends take)."""
    width = max(len(enc[i]) for i in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, i in enumerate(rows):
        ids[r, : len(enc[i])] = enc[i]
        mask[r, : len(enc[i])] = 1
    return ids, mask


def pad_batch(enc: Sequence[Sequence[int]], rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pad_rows` as torch tensors."""
    import torch  # only the model code needs this; the rest of the module is torch-free

    ids, mask = pad_rows(enc, rows)
    return torch.from_numpy(ids), torch.from_numpy(mask)


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


def spread_batches(batches: list[list[int]], workers: int) -> list[list[int]]:
    """At least ``workers`` batches where rows allow: the largest batch is halved until there are
    (so a lone small batch still keeps every worker busy). Rows keep their batches' length order."""
    out = [list(b) for b in batches]
    while len(out) < workers:
        largest = max(range(len(out)), key=lambda i: len(out[i]), default=None)
        if largest is None or len(out[largest]) < 2:
            break
        rows = out.pop(largest)
        half = (len(rows) + 1) // 2
        out[largest:largest] = [rows[:half], rows[half:]]
    return out


@dataclass
class _Entry(Generic[T]):
    item: T
    tokens: int  # padded cost of the entry in a batch; 0 = needs no model work (e.g. already rejected)
    arrived: float


class AdaptiveBatcher(Generic[T]):
    """The one queue-to-micro-batch policy (the classify stage's buffer), deterministic and clock-free:
    every decision takes ``now`` from the caller.

    Entries are kept in arrival (FIFO) order; :meth:`take` cuts the next batch off the front under
    the token budget (``rows x longest row``) and row cap, exactly as :func:`plan_batches` bounds a
    batch. :meth:`due` says whether to run a batch now:

    * a batch is full, or more than one batch is waiting (backlog: run at once; the backlog that
      builds during a slow batch makes the next one bigger, up to the budget — batches grow with load);
    * the front entry needs no model work (cost 0);
    * the oldest entry has waited ``max_delay_s``; or waiting any longer would push the oldest
      entry's expected completion (its age + the estimated run time of the batch) past
      ``target_latency_s``. The run time is estimated from the batches run so far
      (:meth:`observe`: seconds per padded token, exponentially averaged), so a slow model or a
      loaded machine stops the batcher from waiting for company that latency cannot afford.
    """

    def __init__(
        self,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_delay_s: float,
        target_latency_s: float | None = None,
        smoothing: float = 0.3,
    ) -> None:
        if max_batch_tokens < 1 or max_batch_size < 1:
            raise ValueError("max_batch_tokens and max_batch_size must be >= 1")
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_delay_s = max(0.0, max_delay_s)
        self.target_latency_s = target_latency_s
        self.smoothing = smoothing
        self.seconds_per_token: float | None = None  # learned by observe()
        self.last_taken: tuple[int, int] = (0, 0)  # (rows, padded tokens) of the last batch taken
        self._queue: deque[_Entry[T]] = deque()

    @classmethod
    def from_settings(cls, classifier) -> AdaptiveBatcher[T]:
        return cls(
            max_batch_tokens=classifier.max_batch_tokens,
            max_batch_size=classifier.max_batch_size,
            max_delay_s=classifier.max_delay_ms / 1000.0,
            target_latency_s=(classifier.latency_target_ms / 1000.0) if classifier.latency_target_ms else None,
        )

    # -- the queue ----------------------------------------------------------------------------
    def add(self, item: T, tokens: int, now: float) -> None:
        self._queue.append(_Entry(item, max(0, int(tokens)), now))

    def __len__(self) -> int:
        return len(self._queue)

    def items(self) -> list[T]:
        return [e.item for e in self._queue]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items())

    def retain(self, keep: Callable[[T], bool]) -> int:
        """Drop the entries ``keep`` rejects (e.g. of revoked partitions); returns how many."""
        kept = deque(e for e in self._queue if keep(e.item))
        dropped = len(self._queue) - len(kept)
        self._queue = kept
        return dropped

    def clear(self) -> int:
        n = len(self._queue)
        self._queue.clear()
        return n

    # -- decisions ----------------------------------------------------------------------------
    def _front(self) -> tuple[int, int, int]:
        """(entries, rows, padded tokens) of the batch :meth:`take` would cut now."""
        rows = longest = 0
        for i, e in enumerate(self._queue):
            if e.tokens == 0:
                continue
            width = max(longest, e.tokens)
            if rows and (rows >= self.max_batch_size or (rows + 1) * width > self.max_batch_tokens):
                return i, rows, rows * longest
            rows += 1
            longest = width
        return len(self._queue), rows, rows * longest

    def estimate_s(self, tokens: int) -> float:
        """Expected model time of a batch of ``tokens`` padded tokens (0 until one was observed)."""
        return (self.seconds_per_token or 0.0) * tokens

    def due(self, now: float) -> bool:
        if not self._queue:
            return False
        head = self._queue[0]
        if head.tokens == 0:
            return True
        end, rows, tokens = self._front()
        if end < len(self._queue) or rows >= self.max_batch_size:
            return True  # a full batch, or a backlog behind it
        age = now - head.arrived
        if age >= self.max_delay_s:
            return True
        return bool(self.target_latency_s is not None and age + self.estimate_s(tokens) >= self.target_latency_s)

    def wait_s(self, now: float, idle: float) -> float:
        """How long the caller may block for more input before :meth:`due` may turn true."""
        if not self._queue:
            return idle
        head = self._queue[0]
        limit = head.arrived + self.max_delay_s
        if self.target_latency_s is not None:
            limit = min(limit, head.arrived + self.target_latency_s - self.estimate_s(self._front()[2]))
        return max(0.0, min(idle, limit - now))

    def take(self) -> list[T]:
        """The next batch, FIFO, within the budget (entries of cost 0 ride along for free)."""
        end, rows, tokens = self._front()
        self.last_taken = (rows, tokens)
        return [self._queue.popleft().item for _ in range(end)]

    def observe(self, rows: int, tokens: int, seconds: float) -> None:
        """Record a batch's model time: the estimate behind the latency target adapts to it."""
        if rows <= 0 or tokens <= 0 or seconds < 0:
            return
        per = seconds / tokens
        a = self.smoothing
        self.seconds_per_token = per if self.seconds_per_token is None else (1 - a) * self.seconds_per_token + a * per
