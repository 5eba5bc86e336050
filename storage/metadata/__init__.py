"""storage.metadata: kop's metadata store — one interface, embedded (SQLite) or ZooKeeper.

Start with ``open_metadata_store(url)`` and the ``MetadataStore`` interface (api.py).
"""

from storage.metadata.api import (
    MAX_VALUE_BYTES,
    MetadataStore,
    SessionListener,
    SessionState,
    Versioned,
)
from storage.metadata.embedded import EmbeddedStore
from storage.metadata.errors import (
    BadVersionError,
    ConnectionLossError,
    InvalidPathError,
    MetadataError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionLostError,
    StoreOpenError,
    ValueTooLargeError,
)
from storage.metadata.urls import open_metadata_store, parse_metadata_url
from storage.metadata.watches import WatchCallback
from storage.metadata.zookeeper import ZooKeeperStore

__all__ = [
    "MAX_VALUE_BYTES",
    "BadVersionError",
    "ConnectionLossError",
    "EmbeddedStore",
    "InvalidPathError",
    "MetadataError",
    "MetadataStore",
    "NoChildrenForEphemeralsError",
    "NoNodeError",
    "NodeExistsError",
    "NotEmptyError",
    "SessionListener",
    "SessionLostError",
    "SessionState",
    "StoreOpenError",
    "ValueTooLargeError",
    "Versioned",
    "WatchCallback",
    "ZooKeeperStore",
    "open_metadata_store",
    "parse_metadata_url",
]
