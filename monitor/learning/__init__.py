"""Learning from users: label intake (``POST /labels``, files, ``news.labels``) into a vote store,
and the scheduled, gated retrain job with its shadow period.

No other feature uses it; the composition root builds its stages from the modules themselves.
"""

__all__: list[str] = []
