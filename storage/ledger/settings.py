"""Tunables of the ledger client, with defaults suited to a small cluster on a LAN."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LedgerClientSettings:
    # A writer whose pending appends make no progress for this long while a node of its
    # ensemble is down and no replacement exists fails them with NotEnoughNodesError.
    node_wait_timeout: float = 30.0
    # Back-off between attempts to replace (or reach again) a failed node.
    retry_initial_delay: float = 0.05
    retry_max_delay: float = 1.0
    # Largest payload append() accepts; the storage protocol's frames end at 64 MiB.
    max_entry_bytes: int = 32 * 1024 * 1024
    # Entries of one range read in flight at once.
    read_window: int = 256
    # How often open_ledger(recovery=True) restarts when a concurrent recovery interferes.
    recovery_attempts: int = 5
