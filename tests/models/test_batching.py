from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from models.batching import MicroBatcher, plan_batches


def test_plan_batches_partitions_and_respects_budget() -> None:
    lengths = [5, 40, 12, 3, 40, 7, 20, 1, 9, 33, 2, 18]
    batches = plan_batches(lengths, max_tokens=64, max_size=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 4
        assert len(b) * max(lengths[i] for i in b) <= 64 or len(b) == 1
    # longest first, so each batch is a contiguous run of the length-sorted order
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_plan_batches_oversized_text_gets_its_own_batch() -> None:
    assert plan_batches([100, 2, 2], max_tokens=10, max_size=8) == [[0], [1, 2]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _upper(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


def _lens(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]


def test_full_batch_dispatches_without_waiting_for_the_deadline() -> None:
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        return _upper(texts)

    clock = FakeClock()  # never advances: only a full batch can be dispatched
    with MicroBatcher(predict, _lens, max_batch_tokens=10_000, max_batch_size=4, max_delay_ms=60_000,
                      clock=clock) as mb:
        futures = [mb.submit(t) for t in ("a", "b", "c", "d")]
        assert [f.result(timeout=30) for f in futures] == ["A", "B", "C", "D"]
    assert calls == [["a", "b", "c", "d"]]


def test_token_budget_closes_a_batch() -> None:
    calls: list[list[str]] = []
    gate = threading.Event()

    def predict(texts: list[str]) -> list[str]:
        gate.wait(30)
        calls.append(list(texts))
        return _upper(texts)

    clock = FakeClock()
    mb = MicroBatcher(predict, _lens, max_batch_tokens=20, max_batch_size=100, max_delay_ms=60_000, clock=clock)
    futures = [mb.submit("x" * 10) for _ in range(4)]  # 2 texts of 10 tokens fill the budget
    gate.set()
    assert [f.result(timeout=30) for f in futures] == ["X" * 10] * 4
    mb.close()
    assert all(sum(map(len, c)) <= 20 for c in calls)
    assert sum(len(c) for c in calls) == 4


def test_partial_batch_waits_for_the_deadline_then_runs() -> None:
    clock = FakeClock()
    mb = MicroBatcher(_upper, _lens, max_batch_tokens=10_000, max_batch_size=64, max_delay_ms=1000, clock=clock)
    try:
        fut = mb.submit("hello")
        clock.now = 0.5
        mb.wake()
        assert not fut.done()  # deadline (1.0 s on the injected clock) not reached yet
        clock.now = 1.5
        mb.wake()
        assert fut.result(timeout=30) == "HELLO"
        assert mb.batches_run == 1
    finally:
        mb.close()


def test_many_threads_get_their_own_results() -> None:
    with MicroBatcher(_upper, _lens, max_batch_tokens=64, max_batch_size=8, max_delay_ms=5) as mb:
        texts = [f"story {i}" for i in range(200)]
        with ThreadPoolExecutor(8) as pool:
            futures = list(pool.map(mb.submit, texts))
        assert [f.result(timeout=30) for f in futures] == [t.upper() for t in texts]


def test_predict_errors_reach_every_waiter() -> None:
    def boom(texts: list[str]) -> list[str]:
        raise RuntimeError("model exploded")

    with MicroBatcher(boom, _lens, max_batch_size=2, max_delay_ms=0) as mb:
        futures = [mb.submit("a"), mb.submit("b")]
        for f in futures:
            with pytest.raises(RuntimeError, match="exploded"):
                f.result(timeout=30)


def test_close_flushes_pending_and_refuses_new_work() -> None:
    clock = FakeClock()
    mb = MicroBatcher(_upper, _lens, max_delay_ms=60_000, clock=clock)
    fut = mb.submit("late")
    mb.close(timeout=30)
    assert fut.result(timeout=1) == "LATE"
    with pytest.raises(RuntimeError, match="closed"):
        mb.submit("again")
