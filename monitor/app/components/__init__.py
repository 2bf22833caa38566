"""Builders of the daemon's components, one per role (``build_*(ctx) -> Component``): they read the
root settings and construct each feature's stages and routes (see ``monitor.app.wiring``)."""

__all__ = ["alerts", "ingest", "retrain", "stages", "ui"]
