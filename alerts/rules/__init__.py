"""Rule files shipped with finsent (``example.yaml`` is the embedded default); no Python names."""

__all__: list[str] = []
