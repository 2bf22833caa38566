"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest

from tests.connectors.conftest import FeedServer


@pytest.fixture
def feed():
    """A local HTTP server the RSS source polls; tests set ``feed.routes[path]`` to what it serves."""
    server = FeedServer()
    server.start()
    yield server
    server.stop()
