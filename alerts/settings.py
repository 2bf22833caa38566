"""Config section owned by the alert stage (``alerts``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AlertsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
