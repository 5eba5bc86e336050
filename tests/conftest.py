"""Fixtures shared by every test area."""

import sys
from pathlib import Path

# Make "tests.…" importable under plain `pytest` too (python -m pytest adds the current
# directory itself). Drop this once pyproject.toml sets pytest's pythonpath = ["."].
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.zookeeper import (  # noqa: E402  (needs the path above)
    make_zookeeper_server,
    zookeeper_server,
    zookeeper_url,
)

__all__ = ["make_zookeeper_server", "zookeeper_server", "zookeeper_url"]
