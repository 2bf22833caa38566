"""What the classifier says about one text; light to import (no torch), so fakes can share it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Prediction(BaseModel):
    """One story's labels. ``sentiment_score = p(positive) - p(negative)`` in [-1, 1]."""

    model_config = ConfigDict(frozen=True)

    sentiment: Literal["negative", "neutral", "positive"]
    sentiment_probs: dict[str, float]
    sentiment_score: float
    topic: str
    topic_probs: dict[str, float]
    model_version: str
    entities: tuple[EntityPrediction, ...] = ()


class EntityPrediction(BaseModel):
    """The sentiment of one target (ticker) of a text. ``method``: ``entity`` when the target-aware
    head read the mention, ``story`` when it could not (no entity head, mention not in the text
    the model read) and the story's sentiment stands in."""

    model_config = ConfigDict(frozen=True)

    ticker: str
    sentiment: Literal["negative", "neutral", "positive"]
    sentiment_probs: dict[str, float]
    sentiment_score: float
    method: Literal["entity", "story"] = "entity"


Prediction.model_rebuild()
