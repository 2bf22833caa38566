"""Process-level tuning for finsent's long-running stream commands (``run``, ``ingest``, ``replay``...).

CPython's cyclic garbage collector runs a young-generation pass every 700 net container
allocations, and every few of those a full pass over *every* tracked object. A stream process
allocates a few containers per story (records, dicts, futures) while holding large long-lived
structures (the dedup index, loaded replay rows, torch/transformers modules), so with the default
thresholds it spends a large share of its time scanning objects that are never garbage: measured
~20% of file-replay throughput (``tests/bench/bench_ingest.py``: 4.6k -> 5.5k stories/s best of 4).

:func:`tune_gc` freezes what start-up created (moved out of every later scan) and makes the young
generation larger. Reference counting still frees nearly everything at once; only reference
cycles wait longer, which costs a little memory, not correctness.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def tune_gc(gen0: int = GEN0_THRESHOLD) -> None:
    """Call once, after start-up (imports, loaded models and files), before the hot loop."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 1), gen1, gen2)
