"""What a scenario gets besides the client: unique names, topic setup and notes."""

from __future__ import annotations

import re
import time

from compat_tests.setup_admin import SetupAdmin


def now_ms() -> int:
    return int(time.time() * 1000)


class Context:
    """Per-cell helpers. Every topic and group name is unique to (run, scenario, client)."""

    def __init__(self, run_id: str, scenario: str, client: str, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = re.sub(r"[^a-zA-Z0-9-]", "-", f"compat-{run_id}-{scenario}-{client}")
        self._setup: SetupAdmin | None = None
        self.notes: list[str] = []
        self._count = 0

    def name(self, kind: str = "") -> str:
        """A fresh unique name (topic, group or transactional id) for this cell."""
        self._count += 1
        return f"{self.prefix}-{kind}{self._count}"

    def topic(self, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
        """Creates a new topic for this cell and returns its name."""
        name = self.name("t")
        if self._setup is None:
            self._setup = SetupAdmin(self.bootstrap)
        self._setup.create_topic(name, partitions, configs)
        return name

    def note(self, text: str) -> None:
        """Something a reader of the matrix should know about a pass."""
        self.notes.append(text)
