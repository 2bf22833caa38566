"""Feed connectors: RSS/Atom, HTTP JSON APIs, pushed webhooks and file replay, into news.raw.

No other feature uses it; the composition root builds ingest from the modules themselves.
"""

__all__: list[str] = []
