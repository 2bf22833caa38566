"""Rule files shipped with finsent (``example.yaml`` is the embedded default)."""
