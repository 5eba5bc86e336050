"""Errors raised while reading record batches, legacy message sets and compressed payloads.

Every decoder in ``wire.records`` raises only subclasses of :class:`RecordsError`, which is
itself a ``DecodeError`` so that callers catching the wire layer's root error see these too.

Each class carries the Kafka error code a broker answers with when a client sends such bytes
(``kafka_error_code``), so the Produce handler can map an exception to a partition error
without a lookup table of its own:

- :class:`CorruptRecordError` — the bytes are damaged (bad CRC, impossible lengths, a batch
  cut short, undecodable compressed data): ``CORRUPT_MESSAGE`` (2).
- :class:`InvalidRecordError` — the bytes are intact but break a rule (a control batch from a
  client, a record count that disagrees with the offsets, a null header key):
  ``INVALID_RECORD`` (87). ``record_index`` names the offending record when there is one, as
  Kafka's ``ProduceResponse.record_errors`` does.
- :class:`DecompressedTooLargeError` — a compressed payload inflates beyond the caller's limit
  (a decompression bomb): ``MESSAGE_TOO_LARGE`` (10).
- :class:`UnsupportedCompressionError` — a codec the target format cannot carry (zstd for a
  magic 0/1 reader): ``UNSUPPORTED_COMPRESSION_TYPE`` (76).
"""

from __future__ import annotations

from wire.errors import DecodeError

CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_COMPRESSION_TYPE = 76
INVALID_RECORD = 87


class RecordsError(DecodeError):
    """Root of every error raised while decoding records.

    ``offset`` (from ``DecodeError``) is the byte offset into the records blob where the
    problem was found, or ``None`` when it is not tied to one place; the caller that knows
    which request field held the records may fill in ``field_path``.
    """

    kafka_error_code: int = CORRUPT_MESSAGE

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message, offset=position)


class CorruptRecordError(RecordsError):
    """The record bytes are damaged: Kafka answers ``CORRUPT_MESSAGE``."""

    kafka_error_code = CORRUPT_MESSAGE


class CrcMismatchError(CorruptRecordError):
    """A batch's or legacy message's stored checksum does not match its bytes."""


class TruncatedBatchError(CorruptRecordError):
    """The records end in the middle of a batch.

    Fetch responses may legitimately end in a partial batch (the broker cuts at
    ``max_bytes``); a Produce request must not. ``needed`` and ``available`` say how many
    bytes the batch declared and how many were present from its start.
    """

    def __init__(self, message: str, *, position: int, needed: int, available: int) -> None:
        super().__init__(f"{message}: needs {needed} bytes, {available} present", position=position)
        self.needed = needed
        self.available = available


class UnsupportedMagicError(CorruptRecordError):
    """A batch carries a magic (format version) other than the one the reader handles."""

    def __init__(self, magic: int, *, position: int, expected: str) -> None:
        super().__init__(
            f"unsupported record magic {magic}, expected {expected}", position=position
        )
        self.magic = magic


class CompressionError(CorruptRecordError):
    """A compressed payload cannot be decompressed, or names an unknown codec."""


class UnsupportedCompressionError(CompressionError):
    """A codec the target format cannot carry (zstd in a magic 0/1 message set).

    Kafka answers an old client fetching zstd data with ``UNSUPPORTED_COMPRESSION_TYPE``.
    """

    kafka_error_code = UNSUPPORTED_COMPRESSION_TYPE


class DecompressedTooLargeError(CompressionError):
    """A compressed payload inflates beyond the allowed size (a decompression bomb)."""

    kafka_error_code = MESSAGE_TOO_LARGE


class InvalidRecordError(RecordsError):
    """The bytes are intact but break one of Kafka's record rules: ``INVALID_RECORD``.

    ``record_index`` is the index of the offending record inside its batch (Kafka's
    ``batch_index``), or ``None`` when the whole batch is at fault.
    """

    kafka_error_code = INVALID_RECORD

    def __init__(
        self, message: str, *, position: int | None = None, record_index: int | None = None
    ) -> None:
        if record_index is not None:
            message = f"record {record_index}: {message}"
        super().__init__(message, position=position)
        self.record_index = record_index
