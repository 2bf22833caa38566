"""A deterministic lexicon scorer with the classifier's interface, for tests, benchmarks, demos.

Not a model: it counts positive and negative words and looks for topic words. It lets the
streaming stages be exercised (and their overhead measured) without torch, and it can be told to
raise on chosen words to play a poison story. ``cost_per_token_s`` simulates inference time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from models.prediction import Prediction
from monitor.core.records import SENTIMENT_LABELS

POSITIVE = frozenset(
    "beat beats surge surges soar soars rally rallies gain gains record upgrade upgraded profit profits "
    "growth strong raises jump jumps boost tops".split()
)
NEGATIVE = frozenset(
    "miss misses plunge plunges fall falls drop drops loss losses downgrade downgraded weak cut cuts "
    "lawsuit probe fraud recall slump slumps warns layoffs bankruptcy".split()
)
TOPICS: dict[str, frozenset[str]] = {
    "earnings": frozenset("earnings profit profits revenue quarter eps guidance".split()),
    "mna": frozenset("merger acquisition acquire acquires buyout deal takeover".split()),
    "legal": frozenset("lawsuit probe fraud sec court settlement".split()),
    "macro": frozenset("fed inflation rates gdp jobs cpi".split()),
}
DEFAULT_TOPIC = "general"
_WORD = re.compile(r"[a-z0-9']+")


class PoisonError(ValueError):
    """Raised by :class:`KeywordEngine` for a text holding one of its poison words."""


class KeywordEngine:
    def __init__(
        self,
        version: str = "keyword-1",
        poison: Iterable[str] = (),
        cost_per_token_s: float = 0.0,
        cost_per_batch_s: float = 0.0,
    ) -> None:
        self._version = version
        self.poison = frozenset(w.lower() for w in poison)
        self.cost_per_token_s = cost_per_token_s
        self.cost_per_batch_s = cost_per_batch_s
        self.calls = 0
        self.batch_sizes: list[int] = []

    @property
    def version(self) -> str:
        return self._version

    def reload_if_changed(self) -> bool:
        return False

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(_WORD.findall(t.lower())) + 2 for t in texts]

    def predict(self, texts: list[str], targets: object = None) -> list[Prediction]:
        self.calls += 1
        self.batch_sizes.append(len(texts))
        words = [_WORD.findall(t.lower()) for t in texts]
        for w in words:
            if self.poison.intersection(w):
                raise PoisonError("poison word in text")
        if self.cost_per_token_s or self.cost_per_batch_s:
            padded = len(texts) * max((len(w) + 2 for w in words), default=0)
            time.sleep(self.cost_per_batch_s + padded * self.cost_per_token_s)
        return [self._one(w) for w in words]

    def _one(self, words: list[str]) -> Prediction:
        pos = sum(w in POSITIVE for w in words)
        neg = sum(w in NEGATIVE for w in words)
        total = pos + neg + 1
        probs = {"negative": neg / total, "neutral": 1 / total, "positive": pos / total}
        label = max(SENTIMENT_LABELS, key=lambda k: (probs[k], k == "neutral"))
        hits = {name: sum(w in vocab for w in words) for name, vocab in TOPICS.items()}
        best = max(hits, key=lambda k: hits[k])
        topic = best if hits[best] else DEFAULT_TOPIC
        topic_probs = {name: (1.0 if name == topic else 0.0) for name in [*TOPICS, DEFAULT_TOPIC]}
        return Prediction(
            sentiment=label,
            sentiment_probs=probs,
            sentiment_score=round(probs["positive"] - probs["negative"], 6),
            topic=topic,
            topic_probs=topic_probs,
            model_version=self._version,
        )
