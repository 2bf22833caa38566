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
