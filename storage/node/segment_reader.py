"""Read access to segment files for reader threads.

File descriptors are opened, counted and closed on the reactor thread only, so
no locks are needed: a read acquires the descriptor before it goes to a thread
and releases it when it comes back. A segment that is deleted meanwhile keeps
its descriptor until the last read in flight has finished.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from storage.node.journal import segment_path


class SegmentHandle:
    __slots__ = ("segment", "fd", "users", "forgotten")

    def __init__(self, segment: int, fd: int) -> None:
        self.segment = segment
        self.fd = fd
        self.users = 0
        self.forgotten = False


class SegmentReaders:
    """Open descriptors by segment, least recently used first; idle ones beyond
    `max_open` are closed, so a node with thousands of segments stays under its
    file-descriptor limit."""

    def __init__(self, directory: Path, max_open: int = 256) -> None:
        self._directory = directory
        self._max_open = max_open
        self._handles: OrderedDict[int, SegmentHandle] = OrderedDict()

    def path(self, segment: int) -> Path:
        return segment_path(self._directory, segment)

    def acquire(self, segment: int) -> SegmentHandle:
        handle = self._handles.get(segment)
        if handle is None:
            self._close_idle_beyond(self._max_open - 1)
            fd = os.open(self.path(segment), os.O_RDONLY)
            handle = self._handles[segment] = SegmentHandle(segment, fd)
        else:
            self._handles.move_to_end(segment)
        handle.users += 1
        return handle

    def _close_idle_beyond(self, limit: int) -> None:
        excess = len(self._handles) - limit
        for segment in [s for s, h in self._handles.items() if h.users == 0][:max(0, excess)]:
            self.forget(segment)

    @property
    def open_count(self) -> int:
        return len(self._handles)

    def release(self, handle: SegmentHandle) -> None:
        handle.users -= 1
        if handle.forgotten and handle.users == 0:
            os.close(handle.fd)

    def forget(self, segment: int) -> None:
        """The segment is being deleted: close its descriptor once no read uses it."""
        handle = self._handles.pop(segment, None)
        if handle is not None:
            handle.forgotten = True
            if handle.users == 0:
                os.close(handle.fd)

    def close(self) -> None:
        for segment in list(self._handles):
            self.forget(segment)
