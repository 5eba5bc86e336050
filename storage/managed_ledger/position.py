"""Position (ledger id, entry id) of an entry in a managed ledger, and the Entry read back."""

from __future__ import annotations

from dataclasses import dataclass

from storage.node.buffers import Buffer, Payload, payload_length


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """Where an entry lives: ledgers are chained in increasing id order, so positions compare
    in log order. An entry id of -1 means "before the first entry of that ledger"."""

    ledger_id: int
    entry_id: int

    def __str__(self) -> str:
        return f"{self.ledger_id}:{self.entry_id}"


class Entry:
    """One entry of the log: its position, the caller's index given at append, the data.

    An entry appended as parts (bytes-like pieces, see `storage.node.buffers`) keeps them as
    they are in the tail cache: `parts` and `size` never copy, and `data` joins the parts
    the first time it is asked for (then keeps the joined bytes instead of the parts). A
    reader that can take pieces, like a fetch that joins its whole response once anyway,
    uses `parts` and so never pays for that join.
    """

    __slots__ = ("position", "index", "_data", "_size")

    def __init__(self, position: Position, index: int, data: Payload) -> None:
        self.position = position
        self.index = index
        self._data: Buffer | tuple[Buffer, ...]
        self._size: int
        self.data = data

    @property
    def data(self) -> Buffer:
        """The entry's bytes, contiguous."""
        data = self._data
        if isinstance(data, tuple):
            data = self._data = b"".join(data)
        return data

    @data.setter
    def data(self, data: Payload) -> None:
        """Replace the entry's bytes (bytes or parts)."""
        self._data = data if isinstance(data, (bytes, bytearray, memoryview)) else tuple(data)
        self._size = payload_length(data)

    @property
    def parts(self) -> tuple[Buffer, ...]:
        """The entry's bytes as the pieces it was appended with (no copy)."""
        data = self._data
        return data if isinstance(data, tuple) else (data,)

    @property
    def size(self) -> int:
        """Bytes of data, without joining parts."""
        return self._size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return (self.position, self.index, self.data) == (other.position, other.index,
                                                           other.data)

    __hash__ = None  # type: ignore[assignment]  # equal entries may hold different buffers

    def __repr__(self) -> str:
        shown = f"data={b''.join(self.parts)!r}" if self._size <= 64 else f"size={self._size}"
        return f"Entry(position={self.position!r}, index={self.index!r}, {shown})"
