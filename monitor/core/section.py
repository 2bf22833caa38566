"""The base of every settings section: unknown keys and NaN/inf are refused, so a typo is an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
