"""The stream stages: classify (news.raw -> news.scored) and aggregate (news.scored -> news.trends),
their stores, settings and HTTP routes, and shadow scoring of a challenger model.

The public names below are what other features may use; the composition root (``monitor.app``)
builds the stages from the modules themselves.
"""

from monitor.stages.recent import ItemStore, TrendStore
from monitor.stages.shadow import shadow_pointer, shadow_stats, start_shadow, stop_shadow

__all__ = ["ItemStore", "TrendStore", "shadow_pointer", "shadow_stats", "start_shadow", "stop_shadow"]
