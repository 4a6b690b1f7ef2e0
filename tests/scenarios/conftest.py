"""The scenarios' shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.harness import TOPOLOGIES
from tests.helpers.rig import Rig, open_rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A daemon process with its own redis-server (AOF on) and Orderly sim."""
    async with open_rig(tmp_path) as rig:
        yield rig


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """Each contract test runs twice: one shard, and 16 shards over 3 workers on a cluster.

    Returns the topology and, for the cluster, the URL of one of its nodes.
    """
    name: str = request.param
    if name == "one":
        return name, None
    return name, request.getfixturevalue("redis_cluster").url
