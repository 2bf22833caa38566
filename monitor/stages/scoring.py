"""What the classify stage needs from a classifier, and how a batch is scored safely.

The stage depends on this small :class:`ScoringEngine` protocol, not on ``models.engine``, so
tests and benchmarks can inject a deterministic engine. :func:`score_isolating_poison` runs one
micro-batch; when the engine raises, it bisects the batch so a single poison story ends up
rejected and its neighbours are still scored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from models import ticker_relevance
from monitor.core.records import EntitySentiment, NewsItem, ScoredItem

Targets = list[tuple[str, list[str]]]
"""A story's targets for the entity head: ``(ticker, surface forms as written in the story)``."""


@runtime_checkable
class PredictionLike(Protocol):
    """What classify reads from one prediction (read-only: ``models.Prediction`` is frozen)."""

    @property
    def sentiment(self) -> str: ...

    @property
    def sentiment_probs(self) -> Mapping[str, float]: ...

    @property
    def sentiment_score(self) -> float: ...

    @property
    def topic(self) -> str: ...

    @property
    def topic_probs(self) -> Mapping[str, float]: ...

    @property
    def model_version(self) -> str: ...


@runtime_checkable
class ScoringEngine(Protocol):
    """The slice of ``models.engine.InferenceEngine`` the classify stage uses. ``targets`` (per
    text): the tickers whose own sentiment is wanted (``PredictionLike.entities``, when it has them)."""

    @property
    def version(self) -> str: ...

    def predict(self, texts: list[str], targets: Sequence[Targets] | None = None) -> Sequence[PredictionLike]: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def reload_if_changed(self) -> bool: ...


class EngineFailure(RuntimeError):
    """Every story of a multi-story batch failed on its own: the engine, not the data, is broken."""


@dataclass
class BatchOutcome:
    scored: list[tuple[int, ScoredItem]] = field(default_factory=list)
    """(index in the batch, scored item), in batch order."""
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """(index in the batch, reason) of poison stories."""
    engine_calls: int = 0


def targets_of(item: NewsItem) -> Targets:
    """The story's tickers with every way each is written in it (its mentions' surfaces, and
    ``$SYM`` / ``SYM`` so a ticker written plainly is found too)."""
    out: dict[str, list[str]] = {}
    for t in item.tickers:
        out.setdefault(t.upper(), [f"${t.upper()}", t.upper()])
    for m in item.mentions:
        if m.surface and m.ticker.upper() in out:
            out[m.ticker.upper()].append(m.surface)
    return [(t, list(dict.fromkeys(s))) for t, s in out.items()]


def to_scored(item: NewsItem, p: PredictionLike) -> ScoredItem:
    """The scored record: the story's verdict and, per ticker, its own verdict (the story's when the
    engine gave none) with its relevance (``models.relevance``)."""
    own = {e.ticker.upper(): e for e in getattr(p, "entities", ()) or ()}
    entities = []
    for ticker, rel in ticker_relevance(item).items():
        e = own.get(ticker)
        entities.append(
            EntitySentiment(
                ticker=ticker,
                sentiment=(e.sentiment if e else p.sentiment),  # type: ignore[arg-type]
                sentiment_probs=dict(e.sentiment_probs if e else p.sentiment_probs),
                sentiment_score=e.sentiment_score if e else p.sentiment_score,
                relevance=rel,
                method=e.method if e else "story",
            )
        )
    return ScoredItem(
        item=item,
        sentiment=p.sentiment,  # type: ignore[arg-type]  # validated by pydantic
        sentiment_probs=dict(p.sentiment_probs),
        sentiment_score=p.sentiment_score,
        topic=p.topic,
        topic_probs=dict(p.topic_probs),
        model_version=p.model_version,
        entities=tuple(entities),
    )


def score_isolating_poison(predict: Callable[..., Sequence[PredictionLike]], items: Sequence[NewsItem]) -> BatchOutcome:
    """Score ``items``; a batch that makes ``predict`` raise is bisected down to the culprit(s).

    A story whose prediction cannot be turned into a valid :class:`ScoredItem` is rejected too.
    Raises :class:`EngineFailure` when a batch of two or more stories fails for every single one
    of them: then the engine is broken (out of memory, corrupt weights) and dead-lettering the
    whole stream would be wrong; the stage crashes and the batch is redelivered after restart.
    """
    out = BatchOutcome()

    def run(indices: list[int]) -> None:
        out.engine_calls += 1
        try:
            preds = list(predict([items[i].text for i in indices], [targets_of(items[i]) for i in indices]))
            if len(preds) != len(indices):
                raise RuntimeError(f"engine returned {len(preds)} predictions for {len(indices)} texts")
        except Exception as err:
            if len(indices) == 1:
                out.rejected.append((indices[0], f"classifier failed: {type(err).__name__}: {err}"))
                return
            mid = len(indices) // 2
            run(indices[:mid])
            run(indices[mid:])
            return
        for i, p in zip(indices, preds):
            try:
                out.scored.append((i, to_scored(items[i], p)))
            except ValidationError as err:
                out.rejected.append((i, f"invalid prediction: {err.errors()[0]['msg']}"))

    if items:
        run(list(range(len(items))))
    if len(items) > 1 and not out.scored:
        reasons = {r for _, r in out.rejected}
        raise EngineFailure(f"all {len(items)} stories of a batch failed: {sorted(reasons)[:3]}")
    out.scored.sort(key=lambda t: t[0])
    out.rejected.sort(key=lambda t: t[0])
    return out


def load_engine(settings: object) -> ScoringEngine:
    """The served classifier, loaded from the model registry."""
    from models import InferenceEngine  # heavy: imports torch and transformers

    engine: ScoringEngine = InferenceEngine.from_settings(settings)
    return engine
