"""Read access to segment files for reader threads.

File descriptors are opened, counted and closed on the reactor thread only, so
no locks are needed: a read acquires the descriptor before it goes to a thread
and releases it when it comes back. A segment that is deleted meanwhile keeps
its descriptor until the last read in flight has finished.
"""

from __future__ import annotations

import os
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
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._handles: dict[int, SegmentHandle] = {}

    def path(self, segment: int) -> Path:
        return segment_path(self._directory, segment)

    def acquire(self, segment: int) -> SegmentHandle:
        handle = self._handles.get(segment)
        if handle is None:
            fd = os.open(self.path(segment), os.O_RDONLY)
            handle = self._handles[segment] = SegmentHandle(segment, fd)
        handle.users += 1
        return handle

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
