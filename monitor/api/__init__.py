"""Query routes of the streaming stages: ``GET /trends`` and ``GET /items/{id}``."""
