"""NodeRegistration against the embedded metadata store: registers, replaces a stale entry
left by the node's previous life, registers again after a lost session, withdraws on close."""

from __future__ import annotations

import json
import time

import pytest_twisted
from twisted.internet import reactor, task

from storage.metadata import SessionState, open_metadata_store
from storage.node.registration import NodeRegistration


@pytest_twisted.ensureDeferred
async def test_registration_lifecycle(tmp_path):
    store = open_metadata_store(str(tmp_path / "metadata"))
    observer = open_metadata_store(str(tmp_path / "metadata"))
    path = "/storage-nodes/127.0.0.1:3181"
    try:
        await store.create(path, b'{"pid": 1}')  # stale: left by a previous life
        registration = NodeRegistration(store, "127.0.0.1:3181", {"pid": 2})
        await registration.start()
        assert json.loads((await observer.get(path)).value) == {"pid": 2}

        # The session expires (its ephemerals vanish); on reconnection the entry comes back.
        registration._session_changed(SessionState.LOST)
        await store.delete(path)
        registration._session_changed(SessionState.CONNECTED)
        deadline = time.monotonic() + 10
        while (entry := await observer.get(path)) is None:  # registering runs in the background
            assert time.monotonic() < deadline
            await task.deferLater(reactor, 0.01, lambda: None)
        assert json.loads(entry.value) == {"pid": 2}

        # A CONNECTED without a LOST before it (e.g. during start) changes nothing.
        version = (await observer.get(path)).version
        registration._session_changed(SessionState.CONNECTED)
        assert (await observer.get(path)).version == version

        await registration.close()
        assert await observer.children("/storage-nodes") == []
    finally:
        await store.close()
        await observer.close()
