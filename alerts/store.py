"""Transitional: ``monitor/app/component.py`` still imports ``alerts.store``.

The alert store is :mod:`alerts.alert_store` (also public as ``from alerts import AlertStore``).
Delete this module once that import reads ``from alerts import AlertStore``.
"""

from alerts.alert_store import AlertStore

__all__ = ["AlertStore"]
