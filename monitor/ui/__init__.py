"""The page at ``/``: live trends, scored stories, alerts and pipeline health (no build step).

No other feature uses it; the composition root mounts its router.
"""

__all__: list[str] = []
