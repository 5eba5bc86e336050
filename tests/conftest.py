"""Fixtures shared by every test area."""

import sys
from pathlib import Path

# Make "tests.…" importable under plain `pytest` too (python -m pytest adds the current
# directory itself). Drop this once pyproject.toml sets pytest's pythonpath = ["."].
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from hypothesis import settings  # noqa: E402

from tests.zookeeper import (  # noqa: E402  (needs the path above)
    make_zookeeper_server,
    zookeeper_server,
    zookeeper_url,
)

# No Hypothesis deadlines anywhere: a property's examples are checked for what they do, not
# how fast (speed is measured in benchmarks). With the 200 ms default, one example stalled
# by a busy machine fails the run as "Unreliable test timings" (FlakyFailure) although
# nothing is wrong. Loaded here, before any test module builds its settings, so that
# every @settings(...) that does not name a deadline inherits this one.
settings.register_profile("kop", deadline=None)
settings.load_profile("kop")

__all__ = ["make_zookeeper_server", "zookeeper_server", "zookeeper_url"]
