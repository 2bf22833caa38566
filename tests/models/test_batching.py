from __future__ import annotations

import pytest

from models.batching import AdaptiveBatcher, pad_rows, plan_batches, spread_batches


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


def test_spread_batches_gives_every_worker_a_batch_when_rows_allow() -> None:
    assert spread_batches([[0, 1, 2, 3, 4]], 2) == [[0, 1, 2], [3, 4]]
    assert spread_batches([[0, 1, 2, 3], [4]], 4) == [[0], [1], [2, 3], [4]]
    assert spread_batches([[0], [1]], 4) == [[0], [1]]  # single rows cannot be split
    assert spread_batches([[0, 1], [2, 3], [4]], 2) == [[0, 1], [2, 3], [4]]  # enough already
    assert spread_batches([], 2) == []


def test_pad_rows_pads_and_masks() -> None:
    ids, mask = pad_rows([[1, 2, 3], [4], [5, 6]], [0, 2])
    assert ids.tolist() == [[1, 2, 3], [5, 6, 0]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert ids.dtype.name == "int64"


def _batcher(**kw) -> AdaptiveBatcher[str]:
    args = {"max_batch_tokens": 100, "max_batch_size": 4, "max_delay_s": 0.05, "target_latency_s": 0.5} | kw
    return AdaptiveBatcher(**args)


def test_waits_for_company_while_latency_allows_then_runs_on_the_deadline() -> None:
    b = _batcher()
    b.add("a", 10, now=0.0)
    assert not b.due(0.0) and b.wait_s(0.0, idle=1.0) == pytest.approx(0.05)
    b.add("b", 10, now=0.01)
    assert not b.due(0.04)
    assert b.due(0.05)  # the oldest waited max_delay
    assert b.take() == ["a", "b"] and len(b) == 0 and b.last_taken == (2, 20)
    assert not b.due(1.0) and b.wait_s(1.0, idle=0.5) == 0.5


def test_full_batch_and_backlog_run_at_once_fifo_within_the_budget() -> None:
    b = _batcher()
    for i, tokens in enumerate([30, 30, 30]):
        b.add(f"t{i}", tokens, now=0.0)
    assert not b.due(0.0)  # 3 x 30 = 90 <= 100: room for more
    b.add("t3", 30, now=0.0)  # 4 x 30 > 100: t3 starts the next batch -> a backlog
    assert b.due(0.0)
    assert b.take() == ["t0", "t1", "t2"]
    assert b.take() == ["t3"]
    b2 = _batcher(max_batch_tokens=10_000)
    for i in range(4):  # the row cap
        b2.add(str(i), 5, now=0.0)
    assert b2.due(0.0) and b2.take() == ["0", "1", "2", "3"]


def test_slow_model_stops_waiting_for_company() -> None:
    """The latency target, not max_delay, bounds the wait once the model is known to be slow."""
    b = _batcher(max_delay_s=1.0, target_latency_s=0.5)
    b.add("a", 50, now=0.0)
    assert not b.due(0.1)  # nothing observed yet: wait up to max_delay
    b.observe(rows=10, tokens=500, seconds=2.0)  # 4 ms per padded token: a 50-token batch ~0.2 s
    assert b.seconds_per_token == pytest.approx(0.004)
    assert not b.due(0.29)
    assert b.due(0.3)  # 0.3 s waited + 0.2 s of model time reaches the 0.5 s target
    assert b.wait_s(0.1, idle=5.0) == pytest.approx(0.2)
    b.observe(rows=1, tokens=100, seconds=0.0)  # the estimate adapts (exponential average)
    assert b.seconds_per_token == pytest.approx(0.7 * 0.004)


def test_batches_grow_with_the_backlog() -> None:
    """A slow batch lets stories pile up; the next batch takes as many as the budget allows."""
    b = _batcher(max_batch_tokens=1000, max_batch_size=64)
    b.add("first", 10, now=0.0)
    assert b.due(0.05) and b.take() == ["first"]
    for i in range(30):  # arrived while the first batch ran
        b.add(str(i), 10, now=0.06 + i * 0.001)
    assert b.due(0.2) and len(b.take()) == 30


def test_free_entries_ride_along_and_retain_filters() -> None:
    b = _batcher()
    b.add("rejected", 0, now=0.0)  # e.g. dead-lettered already: only its offset is pending
    assert b.due(0.0)
    b.add("x", 60, now=0.0)
    b.add("y", 60, now=0.0)
    assert b.take() == ["rejected", "x"]  # y does not fit the budget beside x
    b.add("z", 10, now=0.0)
    assert b.retain(lambda item: item != "y") == 1 and b.items() == ["z"]
    assert b.clear() == 1 and len(b) == 0


def test_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError):
        AdaptiveBatcher(max_batch_tokens=0, max_batch_size=1, max_delay_s=0)
