"""open_metadata_store(url): pick and open the metadata store a URL names.

URL forms:
- ``zk://host:port[,host:port...][/chroot][?session_timeout=SECONDS]`` — ZooKeeper;
  the chroot defaults to "/kop" and is created if missing; the port defaults to 2181.
- ``file:///absolute/dir`` or a plain directory path — the embedded SQLite store kept
  in that directory (created if missing).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from storage.metadata.api import MetadataStore
from storage.metadata.embedded import EmbeddedStore
from storage.metadata.errors import InvalidPathError
from storage.metadata.paths import ROOT, validate_path
from storage.metadata.zookeeper import DEFAULT_CHROOT, DEFAULT_SESSION_TIMEOUT, ZooKeeperStore

ZOOKEEPER_DEFAULT_PORT = 2181

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$")

_URL_FORMS = "use zk://host:port[,host:port]/chroot, file:///absolute/dir or a directory path"


@dataclass(frozen=True)
class ZooKeeperLocation:
    hosts: str  # "host:port,host:port", as kazoo takes it
    chroot: str
    session_timeout: float


@dataclass(frozen=True)
class EmbeddedLocation:
    directory: Path


def parse_metadata_url(url: str) -> ZooKeeperLocation | EmbeddedLocation:
    """Parse a metadata URL (see the module docstring); ValueError says what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"empty metadata store URL; {_URL_FORMS}")
    if "://" not in url:
        return EmbeddedLocation(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError(f"bad file URL {url!r}: {_URL_FORMS}")
        if parts.query or parts.fragment:
            raise ValueError(f"file URL {url!r} takes no query or fragment")
        return EmbeddedLocation(Path(unquote(parts.path)))
    if parts.scheme == "zk":
        return _parse_zookeeper(url, parts.netloc, parts.path, parts.query)
    raise ValueError(f"unsupported metadata store URL {url!r}: {_URL_FORMS}")


def _parse_zookeeper(url: str, netloc: str, path: str, query: str) -> ZooKeeperLocation:
    hosts = []
    for item in netloc.split(","):
        match = _HOST_PORT.match(item)
        if match is None:
            raise ValueError(f"bad host:port {item!r} in {url!r}")
        port = int(match["port"] or ZOOKEEPER_DEFAULT_PORT)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range in {url!r}")
        hosts.append(f"{match['host']}:{port}")
    chroot = DEFAULT_CHROOT if path in ("", ROOT) else path
    try:
        validate_path(chroot)
    except InvalidPathError as error:
        raise ValueError(f"bad chroot in {url!r}: {error}") from None
    options = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    session_timeout = DEFAULT_SESSION_TIMEOUT
    for name, values in options.items():
        if name != "session_timeout":
            raise ValueError(f"unknown option {name!r} in {url!r} (known: session_timeout)")
        try:
            session_timeout = float(values[-1])
        except ValueError:
            raise ValueError(f"session_timeout must be seconds, got {values[-1]!r}") from None
        if not 0 < session_timeout <= 3600:
            raise ValueError(f"session_timeout out of range in {url!r}")
    return ZooKeeperLocation(",".join(hosts), chroot, session_timeout)


def open_metadata_store(url: str | os.PathLike[str], *, reactor: Any = None) -> MetadataStore:
    """Open the store ``url`` names (see the module docstring).

    The embedded store is usable at once (StoreOpenError if the directory is locked by
    another process or holds a damaged file). A ZooKeeper store connects in the
    background: requests made meanwhile wait; ``yield store.ready(timeout)`` to fail
    fast when ZooKeeper cannot be reached.
    """
    location = parse_metadata_url(os.fspath(url))
    if isinstance(location, ZooKeeperLocation):
        return ZooKeeperStore(
            location.hosts,
            location.chroot,
            session_timeout=location.session_timeout,
            reactor=reactor,
        )
    return EmbeddedStore(location.directory, reactor=reactor)
