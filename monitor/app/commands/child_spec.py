"""What both training children (``challenger`` and ``first_model``) do first: read the JSON spec
their parent wrote, log as it says, and build the settings from its ``home``, ``classifier`` and
``training`` sections (the child's environment carries no ``FINSENT_*``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.app.config import Settings, load_settings
from monitor.core.logs import configure_logging


def load_spec(path: str | Path) -> tuple[dict[str, Any], Settings]:
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    configure_logging(spec.get("log_level", "INFO"), spec.get("log_format", "console"))
    settings = load_settings(None, home=spec["home"], classifier=spec["classifier"], training=spec["training"])
    return spec, settings
