"""Managed-ledger names and where they live in the metadata store.

A name is a "/"-separated path such as "public/default/orders-partition-0"; its metadata is
the node /managed-ledgers/<name> (paths are relative to the metadata store's root or chroot,
like the ledger client's /ledgers). Parent nodes along the way are plain directories
(empty value), so one name may also be the prefix of others.
"""

from __future__ import annotations

from storage.managed_ledger.errors import InvalidNameError
from storage.metadata.errors import InvalidPathError
from storage.metadata.paths import validate_path

MANAGED_LEDGERS_PATH = "/managed-ledgers"


def name_to_path(name: str) -> str:
    """The metadata node of a managed ledger; InvalidNameError when the name cannot be one
    (empty, empty/'.'/'..' segments, characters a metadata path forbids)."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"managed-ledger name must be a non-empty string, got {name!r}")
    path = f"{MANAGED_LEDGERS_PATH}/{name}"
    try:
        return validate_path(path)
    except InvalidPathError as exc:
        raise InvalidNameError(f"invalid managed-ledger name {name!r}: {exc}") from None


def validate_name(name: str) -> str:
    name_to_path(name)
    return name


def validate_cursor_name(name: str) -> str:
    """Cursor names are JSON keys: any non-empty string without control characters."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"cursor name must be a non-empty string, got {name!r}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise InvalidNameError(f"cursor name {name!r} contains a control character")
    return name
