"""Feed connectors: RSS/Atom, HTTP JSON APIs, pushed webhooks and file replay, into news.raw."""
