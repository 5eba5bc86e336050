"""The node tree as SQLite tables: schema, format checks and one function per operation.

Pure data access, no threads and no Twisted: each function takes an open
``sqlite3.Connection`` and either returns a result or raises a MetadataError. Write
operations also return the list of changes they made, which the embedded store turns
into watch notifications. Transactions are the caller's business.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from storage.metadata.api import Versioned
from storage.metadata.errors import (
    BadVersionError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    StoreOpenError,
)
from storage.metadata.paths import ROOT, children_prefix, parent_of, with_sequence

# Written into the SQLite header so kop recognises its own files ("kopM").
APPLICATION_ID = 0x6B6F704D
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE nodes (
    path          TEXT PRIMARY KEY NOT NULL,
    parent        TEXT NOT NULL,      -- '' for the root
    value         BLOB NOT NULL,
    version       INTEGER NOT NULL,
    owner         TEXT,               -- session id of an ephemeral node, NULL if persistent
    next_sequence INTEGER NOT NULL    -- suffix for the next sequential child
) WITHOUT ROWID;
CREATE INDEX nodes_by_parent ON nodes (parent, path);
CREATE INDEX nodes_by_owner ON nodes (owner) WHERE owner IS NOT NULL;
"""


@dataclass(frozen=True, slots=True)
class Change:
    """One node touched by a write; ``membership`` is True when it was created or
    deleted (so its parent's children changed too), False for a value change."""

    path: str
    membership: bool


@dataclass(frozen=True, slots=True)
class _Row:
    value: bytes
    version: int
    owner: str | None
    next_sequence: int


def prepare_schema(conn: sqlite3.Connection, location: str) -> None:
    """Create the schema in an empty database, or check that an existing one is ours.

    Only reads until it is sure the file is a kop metadata store (or empty), so a
    foreign or damaged file is refused without being modified.
    """
    try:
        application_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
        schema_version = conn.execute("PRAGMA user_version").fetchall()[0][0]
        table_count = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
    except sqlite3.DatabaseError as error:
        raise StoreOpenError(
            f"{location} is not a readable kop metadata store ({error}); "
            "it was left untouched — move it away to start with an empty store"
        ) from error
    if application_id == 0 and schema_version == 0 and table_count == 0:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO nodes (path, parent, value, version, owner, next_sequence) "
            "VALUES (?, '', x'', 0, NULL, 0)",
            (ROOT,),
        )
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
        return
    if application_id != APPLICATION_ID:
        raise StoreOpenError(
            f"{location} is an SQLite database but not a kop metadata store "
            f"(application id {application_id:#x}); it was left untouched"
        )
    if schema_version != SCHEMA_VERSION:
        raise StoreOpenError(
            f"{location} has metadata format version {schema_version}; this kop reads "
            f"version {SCHEMA_VERSION} (written by a different kop release?)"
        )


def _row(conn: sqlite3.Connection, path: str) -> _Row | None:
    # fetchall, not fetchone: it runs the statement to completion, which ends the read
    # transaction at once instead of holding a snapshot open.
    rows = conn.execute(
        "SELECT value, version, owner, next_sequence FROM nodes WHERE path = ?", (path,)
    ).fetchall()
    return _Row(*rows[0]) if rows else None


def read_node(conn: sqlite3.Connection, path: str) -> Versioned | None:
    row = _row(conn, path)
    return None if row is None else Versioned(row.value, row.version)


def read_children(conn: sqlite3.Connection, path: str) -> list[str]:
    prefix_length = len(children_prefix(path))
    rows = conn.execute("SELECT path FROM nodes WHERE parent = ? ORDER BY path", (path,)).fetchall()
    return [child[prefix_length:] for (child,) in rows]


def _insert(conn: sqlite3.Connection, path: str, value: bytes, owner: str | None) -> None:
    conn.execute(
        "INSERT INTO nodes (path, parent, value, version, owner, next_sequence) "
        "VALUES (?, ?, ?, 0, ?, 0)",
        (path, parent_of(path), value, owner),
    )


def _ensure_parent(conn: sqlite3.Connection, parent: str, changes: list[Change]) -> _Row:
    """Create ``parent`` and its missing ancestors as empty persistent nodes; return its row."""
    missing: list[str] = []
    ancestor = parent
    row = _row(conn, ancestor)
    while row is None:
        missing.append(ancestor)
        ancestor = parent_of(ancestor)
        row = _row(conn, ancestor)
    if row.owner is not None:
        raise NoChildrenForEphemeralsError(
            f"{ancestor} is ephemeral and cannot have children", ancestor
        )
    for path in reversed(missing):
        _insert(conn, path, b"", None)
        changes.append(Change(path, True))
    return row if not missing else _Row(b"", 0, None, 0)


def create_node(
    conn: sqlite3.Connection,
    path: str,
    value: bytes,
    owner: str | None,
    sequential: bool,
) -> tuple[str, list[Change]]:
    """Create a node (``owner`` set = ephemeral); returns the path created."""
    changes: list[Change] = []
    parent = parent_of(path)
    parent_row = _ensure_parent(conn, parent, changes)
    if sequential:
        sequence = parent_row.next_sequence
        while _row(conn, with_sequence(path, sequence)) is not None:
            sequence += 1
        conn.execute("UPDATE nodes SET next_sequence = ? WHERE path = ?", (sequence + 1, parent))
        path = with_sequence(path, sequence)
    elif _row(conn, path) is not None:
        raise NodeExistsError(f"node {path} already exists", path)
    _insert(conn, path, value, owner)
    changes.append(Change(path, True))
    return path, changes


def _checked_row(conn: sqlite3.Connection, path: str, expected_version: int | None) -> _Row:
    row = _row(conn, path)
    if row is None:
        raise NoNodeError(f"no node at {path}", path)
    if expected_version is not None and row.version != expected_version:
        raise BadVersionError(
            f"{path} is at version {row.version}, not the expected {expected_version}", path
        )
    return row


def set_node(
    conn: sqlite3.Connection, path: str, value: bytes, expected_version: int | None
) -> tuple[int, list[Change]]:
    """Replace a node's value; returns its new version."""
    new_version = _checked_row(conn, path, expected_version).version + 1
    conn.execute(
        "UPDATE nodes SET value = ?, version = ? WHERE path = ?", (value, new_version, path)
    )
    return new_version, [Change(path, False)]


def delete_node(
    conn: sqlite3.Connection, path: str, expected_version: int | None, recursive: bool
) -> tuple[None, list[Change]]:
    _checked_row(conn, path, expected_version)
    # Every descendant of "/a" sorts in ["/a/", "/a0"): '0' is the character after '/'.
    low, high = children_prefix(path), path + "0"
    if recursive:
        descendants = conn.execute(
            "SELECT path FROM nodes WHERE path >= ? AND path < ? ORDER BY path DESC", (low, high)
        ).fetchall()
        conn.execute("DELETE FROM nodes WHERE path >= ? AND path < ?", (low, high))
        changes = [Change(descendant, True) for (descendant,) in descendants]
    else:
        if conn.execute("SELECT 1 FROM nodes WHERE parent = ? LIMIT 1", (path,)).fetchall():
            raise NotEmptyError(f"{path} has children", path)
        changes = []
    conn.execute("DELETE FROM nodes WHERE path = ?", (path,))
    changes.append(Change(path, True))
    return None, changes


def delete_owned(conn: sqlite3.Connection, owner: str | None) -> tuple[None, list[Change]]:
    """Delete the ephemeral nodes of one session (``owner``), or of every session (None)."""
    if owner is None:
        rows = conn.execute("SELECT path FROM nodes WHERE owner IS NOT NULL").fetchall()
        conn.execute("DELETE FROM nodes WHERE owner IS NOT NULL")
    else:
        rows = conn.execute("SELECT path FROM nodes WHERE owner = ?", (owner,)).fetchall()
        conn.execute("DELETE FROM nodes WHERE owner = ?", (owner,))
    return None, [Change(path, True) for (path,) in rows]
