"""Errors raised by metadata stores (both the embedded and the ZooKeeper implementation).

Every failure a caller can meet is a ``MetadataError``; the subclasses name the
situations callers handle differently (a lost compare-and-set, a missing node, ...).
Bad arguments are also ``ValueError``/``TypeError`` so that generic code recognises
them as programming errors.
"""

from __future__ import annotations


class MetadataError(Exception):
    """Base class of every metadata-store error."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class NodeExistsError(MetadataError):
    """create() found a node already at that path."""


class NoNodeError(MetadataError):
    """The node (or, for create, a required node) does not exist."""


class BadVersionError(MetadataError):
    """A compare-and-set lost: the node's version is not the expected one."""


class NotEmptyError(MetadataError):
    """delete() without recursive=True on a node that has children."""


class NoChildrenForEphemeralsError(MetadataError):
    """Ephemeral nodes cannot have children (as in ZooKeeper)."""


class SessionLostError(MetadataError):
    """The store's session is gone (closed, or expired in ZooKeeper); its ephemerals are gone."""


class ConnectionLossError(MetadataError):
    """The connection dropped before an answer arrived: a write may or may not have happened."""


class StoreOpenError(MetadataError):
    """The store cannot be opened: locked by another process, corrupt, or of an unknown format."""


class InvalidPathError(MetadataError, ValueError):
    """A path that is not of the form "/a/b/c" (see storage.metadata.paths)."""


class ValueTooLargeError(MetadataError, ValueError):
    """A node value above MAX_VALUE_BYTES (ZooKeeper's request size limit)."""
