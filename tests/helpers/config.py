"""Set-up shared by the CLI tests: a config file pointing at the test redis-server."""

from __future__ import annotations

from pathlib import Path

from state.keys import Keys

# The checkout this test suite belongs to.
REPO = Path(__file__).resolve().parents[2]
PREFIX = "cli"
KEYS = Keys(PREFIX)
ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"

CONFIG = """\
[redis]
url = "{url}"
prefix = "{prefix}"

[[feeds]]
venue = "orderly"
url = "ws://127.0.0.1:9/ws"
symbols = ["PERP_ETH_USDC"]

[markets.PERP_ETH_USDC]
maintenance = {{ model = "flat", rate = "0.006" }}

[markets.PERP_BTC_USDC]
maintenance = {{ model = "flat", rate = "0.005" }}
"""


def write_config(directory: Path, url: str, name: str = "liqwatch.toml") -> Path:
    """Write a config for ``url`` under the test prefix; return its path."""
    path = directory / name
    path.write_text(CONFIG.format(url=url, prefix=PREFIX))
    return path
