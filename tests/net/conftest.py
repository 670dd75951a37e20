from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from .conformance import World, libp2p_world, memory_world


@pytest.fixture(autouse=True)
def _quiet_libp2p() -> Iterator[None]:
    """py-libp2p logs normal events (unsupported protocol, closing peers) at ERROR."""
    logger = logging.getLogger("libp2p")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture(params=["libp2p", "memory"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """Three endpoints (a, b, c) of the real network or of its in-memory twin."""
    make = libp2p_world if request.param == "libp2p" else memory_world
    async with make() as w:
        yield w
