"""Path rules shared by every metadata store: "/a/b/c", validated as ZooKeeper does.

Both implementations validate with these functions before doing anything, so a path
that one store accepts the other accepts too.
"""

from __future__ import annotations

from storage.metadata.errors import InvalidPathError

ROOT = "/"

# Digits in a sequential node's suffix, as ZooKeeper writes them ("item-0000000042").
SEQUENCE_DIGITS = 10


def _is_forbidden_char(char: str) -> bool:
    # The same ranges ZooKeeper's PathUtils rejects: control characters and the
    # surrogate / private-use / specials blocks.
    code = ord(char)
    return (
        code <= 0x1F or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xF8FF or 0xFFF0 <= code <= 0xFFFF
    )


def validate_path(path: object, *, sequential: bool = False) -> str:
    """Return ``path`` if it is a valid node path, else raise InvalidPathError.

    A sequential create may end in "/" (the store appends the sequence number).
    """
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a str, got {type(path).__name__}", None)
    if not path.startswith("/"):
        raise InvalidPathError(f"path must start with '/': {path!r}", path)
    if path == ROOT:
        return path
    body = path[1:-1] if sequential and path.endswith("/") else path[1:]
    if body == "" and sequential:
        return path
    for name in body.split("/"):
        if name == "":
            raise InvalidPathError(f"empty node name (double or trailing '/') in {path!r}", path)
        if name in (".", ".."):
            raise InvalidPathError(f"relative name {name!r} in {path!r}", path)
        bad = next((char for char in name if _is_forbidden_char(char)), None)
        if bad is not None:
            raise InvalidPathError(f"forbidden character U+{ord(bad):04X} in {path!r}", path)
    return path


def parent_of(path: str) -> str:
    """The parent of a valid path; the root is its own parent."""
    cut = path.rfind("/")
    return ROOT if cut <= 0 else path[:cut]


def child_path(parent: str, name: str) -> str:
    return parent + name if parent == ROOT else f"{parent}/{name}"


def children_prefix(path: str) -> str:
    """What every descendant's path starts with ("/a" -> "/a/", "/" -> "/")."""
    return path if path == ROOT else path + "/"


def with_sequence(path: str, sequence: int) -> str:
    return f"{path}{sequence:0{SEQUENCE_DIGITS}d}"
