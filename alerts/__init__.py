"""Alerting: rules over trends and stories, alert state, and durable signed delivery.

The public names below are what other features may use (the page reads alert state through
them); the composition root (``monitor.app``) builds the alert stages from the modules themselves.
"""

from alerts.alert_store import AlertStore
from alerts.views import AlertView

__all__ = ["AlertStore", "AlertView"]
