"""Torch's CPU threads during training follow what the rest of the machine leaves free.

With OpenMP's barrier-synchronised parallel regions, two threads on two oversubscribed cores run
several times slower than one thread (measured: 5 vs 23 examples/s at load 8 on 2 cores), and one
thread on an idle 2-core machine wastes half of it. One reading at the start of a 40-minute run
decides wrongly for most of it, so :class:`ThreadGovernor` re-reads the machine every
``interval_s`` while training runs: the CPU time the whole machine spent (``/proc/stat``) minus what
this process spent (``os.times``) is what others use; training takes the cores they leave, at least
one, at most its cap. Where ``/proc/stat`` cannot be read the threads stay at the cap.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import structlog
import torch

log = structlog.get_logger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds(path: str = "/proc/stat") -> float | None:
    """CPU seconds every core of the machine spent busy since boot (None where unknown)."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in fields[1:])
    steal = rest[0] if rest else 0
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU seconds this process (all its threads) spent so far."""
    t = os.times()
    return t.user + t.system


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for(others_busy_cores: float, cores: int, cap: int) -> int:
    """The cores the others leave (rounded), at least one, at most ``cap``."""
    return max(1, min(cap, cores - round(max(0.0, others_busy_cores))))


class ThreadGovernor:
    """Sets torch's thread count from what others use, now and then every ``interval_s``.

    ``fixed``: a thread count the operator chose (``training.threads``); then nothing is governed.
    """

    def __init__(
        self,
        *,
        fixed: int | None = None,
        cores: int | None = None,
        interval_s: float = 15.0,
        apply: Callable[[int], None] | None = None,
        machine_busy: Callable[[], float | None] = machine_busy_seconds,
        own_busy: Callable[[], float] = own_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cores = cores or usable_cores()
        self.fixed = fixed
        self.cap = fixed or self.cores
        self.interval_s = interval_s
        self._apply = apply or torch.set_num_threads
        self._machine_busy, self._own_busy, self._clock = machine_busy, own_busy, clock
        self._last: tuple[float, float, float] | None = None  # (clock, machine busy, own busy)
        self.threads = self.cap
        self.changes = 0

    def start(self, sample_s: float = 0.5) -> int:
        """The first count, from a short sample of the machine (the whole cap when fixed or unknown)."""
        if self.fixed is None and self._reading() is not None:
            self._last = self._reading()
            time.sleep(sample_s)
            self._decide(self._reading())
        self._apply(self.threads)
        return self.threads

    def tick(self) -> int:
        """Call often (every training step): re-decides once ``interval_s`` has passed."""
        if self.fixed is None and self._last is not None and self._clock() - self._last[0] >= self.interval_s:
            before = self.threads
            self._decide(self._reading())
            if self.threads != before:
                self.changes += 1
                self._apply(self.threads)
                log.info("training threads changed", threads=self.threads, was=before, cores=self.cores)
        return self.threads

    def _reading(self) -> tuple[float, float, float] | None:
        busy = self._machine_busy()
        return None if busy is None else (self._clock(), busy, self._own_busy())

    def _decide(self, now: tuple[float, float, float] | None) -> None:
        if now is None or self._last is None:
            return
        dt = now[0] - self._last[0]
        if dt > 0:
            others = ((now[1] - self._last[1]) - (now[2] - self._last[2])) / dt
            self.threads = threads_for(others, self.cores, self.cap)
        self._last = now
