"""The scenarios' shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.rig import Rig, open_rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A daemon process with its own redis-server (AOF on) and Orderly sim."""
    async with open_rig(tmp_path) as rig:
        yield rig
