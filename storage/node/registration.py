"""Announcing a live storage node in the metadata store.

The node holds an ephemeral entry /storage-nodes/<host:port> for as long as its
metadata session lives, so ledger clients can find live nodes. If the session
is lost (the entry vanishes with it), the entry is created again as soon as the
store reconnects.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from twisted.internet import defer

from storage.metadata import MetadataStore, NodeExistsError, NoNodeError, SessionState

log = logging.getLogger(__name__)

STORAGE_NODES_PATH = "/storage-nodes"


def storage_node_path(address: str) -> str:
    return f"{STORAGE_NODES_PATH}/{address}"


class NodeRegistration:
    """Keeps `address` registered in `store`."""

    def __init__(self, store: MetadataStore, address: str, info: dict[str, Any]) -> None:
        self._store = store
        self.address = address
        self.path = storage_node_path(address)
        self._value = json.dumps(info, sort_keys=True).encode()
        self._registered = False
        self._lost = False  # the session was lost since the last registration
        self._closed = False

    async def start(self) -> None:
        self._store.add_session_listener(self._session_changed)
        await self._register()

    async def _register(self) -> None:
        try:
            await self._store.create(self.path, self._value, ephemeral=True)
        except NodeExistsError:
            # Left by this node's previous life, whose session has not expired yet. No other
            # live node can own the address: this process holds the port. Replace it.
            log.info("replacing stale registration %s", self.path)
            with contextlib.suppress(NoNodeError):
                await self._store.delete(self.path)
            await self._store.create(self.path, self._value, ephemeral=True)
        self._registered = True
        log.info("registered storage node at %s", self.path)

    def _session_changed(self, state: SessionState) -> None:
        if state == SessionState.LOST:
            self._lost = True
            self._registered = False
            log.warning("metadata session lost; %s will be registered again", self.path)
        elif state == SessionState.CONNECTED and self._lost and not self._closed:
            # Only after a LOST: the first CONNECTED may arrive while start() registers.
            self._lost = False
            defer.ensureDeferred(self._register()).addErrback(
                lambda failure: log.error("could not register %s again: %s", self.path,
                                          failure.getErrorMessage()))

    async def close(self) -> None:
        """Withdraw the entry (it would vanish with the session anyway) and close the store."""
        self._closed = True
        if self._registered:
            try:
                await self._store.delete(self.path)
            except Exception as error:  # the session may already be gone; closing ends it
                log.info("could not withdraw %s: %s", self.path, error)
        await self._store.close()
