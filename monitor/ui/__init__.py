"""The page at ``/``: live trends, scored stories, alerts and pipeline health (no build step)."""
