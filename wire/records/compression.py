"""Compression codecs of Kafka record batches: gzip, snappy, lz4 and zstd, bounded on read.

All the heavy lifting is done in C: ``zlib`` for gzip, ``cramjam`` for snappy, lz4 and zstd.
Python only walks the container formats' block headers, for two reasons:

- **Bounded decompression.** A few kilobytes can inflate to gigabytes. Before decompressing,
  the sizes the format itself declares (xerial block lengths, the raw snappy length preamble,
  lz4 block sizes and block maximum, zstd block sizes) give an upper bound of the output; a
  payload whose bound exceeds ``max_size`` is refused without being decompressed, or is
  decompressed into a buffer of ``max_size`` bytes and refused if it does not fit. gzip is
  streamed through ``zlib`` with an output cap. Memory never exceeds ``max_size`` plus the
  input, and :class:`DecompressedTooLargeError` says so.
- **Writing what Kafka readers expect.**

  * gzip: one gzip member (RFC 1952), as Java's ``GZIPOutputStream`` writes.
  * snappy: *raw* snappy, as librdkafka writes. Java's ``SnappyInputStream`` falls back to
    raw snappy when the xerial magic is absent, and librdkafka, kafka-python and aiokafka all
    detect the xerial header, so every client reads it. On read, both raw snappy and the
    xerial framing that the Java client and kafka-python write (``\\x82SNAPPY\\x00`` header,
    then ``int32`` length-prefixed raw snappy blocks) are accepted.
  * lz4: the LZ4 *frame* format with independent 64 KiB blocks and no checksums, the flags
    Java's ``KafkaLZ4BlockOutputStream`` writes (Kafka's Java reader refuses linked blocks).
    Magic-0 message sets used a broken frame header checksum (KAFKA-3160: computed over the
    magic number too); ``legacy_lz4_checksum=True`` writes that variant and accepts either
    variant on read.
  * zstd: a standard zstd frame.

Only :class:`~wire.records.errors.CompressionError` (and its subclass
:class:`~wire.records.errors.DecompressedTooLargeError`) escapes :func:`decompress`.
"""

from __future__ import annotations

import struct
import zlib

import cramjam

from wire.records.batch import Compression
from wire.records.errors import CompressionError, DecompressedTooLargeError

Buffer = bytes | bytearray | memoryview

XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_SIZE = 16
_XERIAL_HEADER = struct.Struct(">8sii")
_INT32_BE = struct.Struct(">i")
_UINT32_LE = struct.Struct("<I")
_UINT64_LE = struct.Struct("<Q")

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_LEVEL = 6

_LZ4_MAGIC = 0x184D2204
_LZ4_SKIPPABLE_MASK = 0xFFFFFFF0
_LZ4_SKIPPABLE_MAGIC = 0x184D2A50
_LZ4_UNCOMPRESSED_BIT = 0x80000000
_LZ4_BLOCK_MAXIMUM = {4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024}
#: FLG: version 01, independent blocks, no block or content checksum, no content size.
_LZ4_WRITE_FLG = 0x60
#: BD: 64 KiB maximum block size.
_LZ4_WRITE_BD = 0x40
_LZ4_WRITE_BLOCK = 64 * 1024

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE_MASK = 0xFFFFFFF0
_ZSTD_SKIPPABLE_MAGIC = 0x184D2A50
_ZSTD_BLOCK_MAXIMUM = 128 * 1024
_ZSTD_LEVEL = 3

#: How cramjam says a ``decompress_into`` output buffer was too small.
_OUTPUT_FULL = "failed to write whole buffer"


def compress(codec: int, data: Buffer, *, legacy_lz4_checksum: bool = False) -> bytes:
    """Compress ``data`` with ``codec`` (a :class:`~wire.records.batch.Compression` id)."""
    if codec == Compression.NONE:
        return bytes(data)
    if codec == Compression.GZIP:
        packer = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        return packer.compress(data) + packer.flush()
    if codec == Compression.SNAPPY:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == Compression.LZ4:
        return _lz4_frame(data, legacy_checksum=legacy_lz4_checksum)
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data, level=_ZSTD_LEVEL))
    raise CompressionError(f"unknown compression codec id {codec}")


def decompress(
    codec: int, data: Buffer, *, max_size: int, legacy_lz4_checksum: bool = False
) -> bytes:
    """Decompress ``data`` written with ``codec``, refusing output larger than ``max_size``.

    Raises :class:`CompressionError` for undecodable data or an unknown codec, and
    :class:`DecompressedTooLargeError` when the output would exceed ``max_size`` bytes.
    """
    if codec == Compression.NONE:
        if len(data) > max_size:
            raise DecompressedTooLargeError(f"{len(data)} bytes exceed the limit of {max_size}")
        return bytes(data)
    if codec == Compression.GZIP:
        return _gunzip(data, max_size)
    if codec == Compression.SNAPPY:
        return _unsnappy(data, max_size)
    if codec == Compression.LZ4:
        if legacy_lz4_checksum:
            data = _repair_lz4_header_checksum(data)
        bound = _lz4_output_bound(data)
        return _decompress_within(cramjam.lz4, "lz4", data, bound, max_size)
    if codec == Compression.ZSTD:
        bound = _zstd_output_bound(data)
        return _decompress_within(cramjam.zstd, "zstd", data, bound, max_size)
    raise CompressionError(f"unknown compression codec id {codec}")


# --- gzip ------------------------------------------------------------------------------------


def _gunzip(data: Buffer, max_size: int) -> bytes:
    """Inflate one or more concatenated gzip members, never holding more than ``max_size``."""
    output = bytearray()
    pending = bytes(data)
    if not pending:
        raise CompressionError("gzip payload is empty")
    while pending:  # one iteration per gzip member
        inflater = zlib.decompressobj(_GZIP_WBITS)
        while not inflater.eof:
            try:
                piece = inflater.decompress(pending, max_size - len(output) + 1)
            except zlib.error as exc:
                raise CompressionError(f"gzip payload is corrupt: {exc}") from None
            output += piece
            if len(output) > max_size:
                raise DecompressedTooLargeError(f"gzip payload inflates beyond {max_size} bytes")
            pending = inflater.unconsumed_tail
            if not pending and not piece and not inflater.eof:
                raise CompressionError("gzip payload ends before its end-of-stream marker")
        pending = inflater.unused_data
    return bytes(output)


# --- snappy ----------------------------------------------------------------------------------


def _unsnappy(data: Buffer, max_size: int) -> bytes:
    view = memoryview(data)
    if bytes(view[: len(XERIAL_MAGIC)]) != XERIAL_MAGIC:
        return _unsnappy_raw(view, max_size)
    if len(view) < _XERIAL_HEADER_SIZE:
        raise CompressionError("xerial snappy header cut short")
    blocks = []
    total = 0
    position = _XERIAL_HEADER_SIZE
    while position < len(view):
        if position + 4 > len(view):
            raise CompressionError("xerial snappy block length cut short")
        (length,) = _INT32_BE.unpack_from(view, position)
        position += 4
        if length < 0 or position + length > len(view):
            raise CompressionError(f"xerial snappy block of {length} bytes overruns the payload")
        block = view[position : position + length]
        total += _snappy_raw_length(block)
        if total > max_size:
            raise DecompressedTooLargeError(f"snappy payload inflates beyond {max_size} bytes")
        blocks.append(block)
        position += length
    return b"".join(_unsnappy_raw(block, max_size) for block in blocks)


def _snappy_raw_length(block: memoryview) -> int:
    """The uncompressed length raw snappy declares in its varint preamble."""
    try:
        return int(cramjam.snappy.decompress_raw_len(block))
    except Exception as exc:  # cramjam raises its own error types
        raise CompressionError(f"snappy payload is corrupt: {exc}") from None


def _unsnappy_raw(block: memoryview, max_size: int) -> bytes:
    declared = _snappy_raw_length(block)
    if declared > max_size:
        raise DecompressedTooLargeError(
            f"snappy payload declares {declared} bytes, limit {max_size}"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(block))
    except Exception as exc:
        raise CompressionError(f"snappy payload is corrupt: {exc}") from None


# --- bounded one-shot decompression (lz4, zstd) ---------------------------------------------


def _decompress_within(codec_module, name: str, data: Buffer, bound: int, max_size: int) -> bytes:
    """Decompress when the format's own bound fits the limit; else into a capped buffer."""
    try:
        if bound <= max_size:
            return bytes(codec_module.decompress(data))
        # The declared sizes allow more than the limit; the real output may still fit.
        capped = bytearray(max_size)
        try:
            written = codec_module.decompress_into(data, capped)
        except Exception as exc:
            # cramjam reports a full output buffer with Rust's io::ErrorKind::WriteZero text.
            if _OUTPUT_FULL in str(exc):
                raise DecompressedTooLargeError(
                    f"{name} payload inflates beyond {max_size} bytes"
                ) from None
            raise
        return bytes(memoryview(capped)[:written])
    except CompressionError:
        raise
    except Exception as exc:
        raise CompressionError(f"{name} payload is corrupt: {exc}") from None


def _lz4_output_bound(data: Buffer) -> int:
    """Upper bound of an LZ4 frame sequence's output, from its block headers alone.

    Also rejects structurally broken frames (overrunning blocks, unknown block sizes) before
    any C code sees them.
    """
    view = memoryview(data)
    end = len(view)
    if end == 0:
        raise CompressionError("lz4 payload is empty")
    position = 0
    bound = 0
    while position < end:
        if position + 4 > end:
            raise CompressionError("lz4 frame magic cut short")
        (magic,) = _UINT32_LE.unpack_from(view, position)
        if magic & _LZ4_SKIPPABLE_MASK == _LZ4_SKIPPABLE_MAGIC:
            if position + 8 > end:
                raise CompressionError("lz4 skippable frame cut short")
            (skip,) = _UINT32_LE.unpack_from(view, position + 4)
            position += 8 + skip
            continue
        if magic != _LZ4_MAGIC:
            raise CompressionError(f"lz4 frame magic {magic:#x} is not {_LZ4_MAGIC:#x}")
        if position + 7 > end:
            raise CompressionError("lz4 frame header cut short")
        flg = view[position + 4]
        bd = view[position + 5]
        block_maximum = _LZ4_BLOCK_MAXIMUM.get((bd >> 4) & 0x07)
        if block_maximum is None:
            raise CompressionError(f"lz4 frame has an invalid block size id in BD {bd:#x}")
        has_block_checksum = bool(flg & 0x10)
        has_content_checksum = bool(flg & 0x04)
        has_content_size = bool(flg & 0x08)
        header_size = 7 + (8 if has_content_size else 0) + (4 if flg & 0x01 else 0)
        if position + header_size > end:
            raise CompressionError("lz4 frame header cut short")
        # The decoder checks a declared content size, so it bounds the frame's output.
        (content_size,) = _UINT64_LE.unpack_from(view, position + 6) if has_content_size else (-1,)
        position += header_size
        frame_bound = 0
        while True:
            if position + 4 > end:
                raise CompressionError("lz4 block size cut short")
            (block_word,) = _UINT32_LE.unpack_from(view, position)
            position += 4
            if block_word == 0:
                break  # end mark
            block_size = block_word & ~_LZ4_UNCOMPRESSED_BIT
            if block_size > block_maximum:
                raise CompressionError(f"lz4 block of {block_size} bytes exceeds its frame maximum")
            position += block_size + (4 if has_block_checksum else 0)
            if position > end:
                raise CompressionError("lz4 block overruns the payload")
            frame_bound += block_size if block_word & _LZ4_UNCOMPRESSED_BIT else block_maximum
        bound += frame_bound if content_size < 0 else min(frame_bound, content_size)
        position += 4 if has_content_checksum else 0
        if position > end:
            raise CompressionError("lz4 content checksum cut short")
    return bound


def _lz4_frame(data: Buffer, *, legacy_checksum: bool) -> bytes:
    """Write an LZ4 frame of independent 64 KiB blocks, as Kafka's Java client does."""
    magic = _UINT32_LE.pack(_LZ4_MAGIC)
    descriptor = bytes((_LZ4_WRITE_FLG, _LZ4_WRITE_BD))
    checked = magic + descriptor if legacy_checksum else descriptor
    parts = [magic, descriptor, bytes(((xxh32(checked) >> 8) & 0xFF,))]
    view = memoryview(data)
    for start in range(0, len(view), _LZ4_WRITE_BLOCK):
        chunk = view[start : start + _LZ4_WRITE_BLOCK]
        packed = bytes(cramjam.lz4.compress_block(chunk, store_size=False))
        if len(packed) < len(chunk):
            parts += (_UINT32_LE.pack(len(packed)), packed)
        else:  # incompressible: store as is
            parts += (_UINT32_LE.pack(len(chunk) | _LZ4_UNCOMPRESSED_BIT), bytes(chunk))
    parts.append(_UINT32_LE.pack(0))
    return b"".join(parts)


def _repair_lz4_header_checksum(data: Buffer) -> bytes:
    """Rewrite the first frame's header checksum so either KAFKA-3160 variant decodes."""
    raw = bytearray(data)
    if len(raw) < 7:
        return bytes(raw)  # too short for a header; the frame walk reports it
    flg = raw[4]
    checksum_at = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)
    if checksum_at < len(raw):
        raw[checksum_at] = (xxh32(bytes(raw[4:checksum_at])) >> 8) & 0xFF
    return bytes(raw)


def _zstd_output_bound(data: Buffer) -> int:
    """Upper bound of a zstd frame sequence's output, from its frame and block headers."""
    view = memoryview(data)
    end = len(view)
    if end == 0:
        raise CompressionError("zstd payload is empty")
    position = 0
    bound = 0
    while position < end:
        if position + 4 > end:
            raise CompressionError("zstd frame magic cut short")
        (magic,) = _UINT32_LE.unpack_from(view, position)
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_MAGIC:
            if position + 8 > end:
                raise CompressionError("zstd skippable frame cut short")
            (skip,) = _UINT32_LE.unpack_from(view, position + 4)
            position += 8 + skip
            continue
        if magic != _ZSTD_MAGIC:
            raise CompressionError(f"zstd frame magic {magic:#x} is not {_ZSTD_MAGIC:#x}")
        if position + 5 > end:
            raise CompressionError("zstd frame header cut short")
        descriptor = view[position + 4]
        single_segment = bool(descriptor & 0x20)
        content_size_bytes = (0, 2, 4, 8)[descriptor >> 6]
        if content_size_bytes == 0 and single_segment:
            content_size_bytes = 1
        header_size = (
            5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03] + content_size_bytes
        )
        has_checksum = bool(descriptor & 0x04)
        if position + header_size > end:
            raise CompressionError("zstd frame header cut short")
        content_size = _zstd_content_size(view, position + header_size, content_size_bytes)
        position += header_size
        frame_bound = 0
        while True:
            if position + 3 > end:
                raise CompressionError("zstd block header cut short")
            block_header = view[position] | view[position + 1] << 8 | view[position + 2] << 16
            position += 3
            is_last = block_header & 1
            block_type = (block_header >> 1) & 0x03
            block_size = block_header >> 3
            if block_type == 3:
                raise CompressionError("zstd block has the reserved block type")
            if block_size > _ZSTD_BLOCK_MAXIMUM:
                raise CompressionError(f"zstd block of {block_size} bytes exceeds the maximum")
            if block_type == 1:  # RLE: one byte repeated block_size times
                position += 1
                frame_bound += block_size
            else:  # raw: stored as is; compressed: at most the block maximum
                position += block_size
                frame_bound += block_size if block_type == 0 else _ZSTD_BLOCK_MAXIMUM
            if position > end:
                raise CompressionError("zstd block overruns the payload")
            if is_last:
                break
        bound += frame_bound if content_size < 0 else min(frame_bound, content_size)
        position += 4 if has_checksum else 0
        if position > end:
            raise CompressionError("zstd content checksum cut short")
    return bound


def _zstd_content_size(view: memoryview, header_end: int, size_bytes: int) -> int:
    """The Frame_Content_Size field ending the frame header, or -1 when absent."""
    if size_bytes == 0:
        return -1
    field = int.from_bytes(view[header_end - size_bytes : header_end], "little")
    return field + 256 if size_bytes == 2 else field  # the 2-byte form is offset by 256


# --- xxHash32, only for lz4 frame header checksums (a few bytes) ---------------------------

_PRIME32_1 = 2654435761
_PRIME32_2 = 2246822519
_PRIME32_3 = 3266489917
_PRIME32_4 = 668265263
_PRIME32_5 = 374761393
_MASK32 = 0xFFFFFFFF


def _rotl32(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK32


def xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 of ``data``, in pure Python: meant for the few bytes of an lz4 header."""
    length = len(data)
    position = 0
    if length >= 16:
        lanes = [
            (seed + _PRIME32_1 + _PRIME32_2) & _MASK32,
            (seed + _PRIME32_2) & _MASK32,
            seed & _MASK32,
            (seed - _PRIME32_1) & _MASK32,
        ]
        while position + 16 <= length:
            for lane in range(4):
                (word,) = struct.unpack_from("<I", data, position)
                lanes[lane] = (
                    _rotl32((lanes[lane] + word * _PRIME32_2) & _MASK32, 13) * _PRIME32_1
                ) & _MASK32
                position += 4
        acc = (
            _rotl32(lanes[0], 1)
            + _rotl32(lanes[1], 7)
            + _rotl32(lanes[2], 12)
            + _rotl32(lanes[3], 18)
        ) & _MASK32
    else:
        acc = (seed + _PRIME32_5) & _MASK32
    acc = (acc + length) & _MASK32
    while position + 4 <= length:
        (word,) = struct.unpack_from("<I", data, position)
        acc = (_rotl32((acc + word * _PRIME32_3) & _MASK32, 17) * _PRIME32_4) & _MASK32
        position += 4
    while position < length:
        acc = (_rotl32((acc + data[position] * _PRIME32_5) & _MASK32, 11) * _PRIME32_1) & _MASK32
        position += 1
    acc ^= acc >> 15
    acc = (acc * _PRIME32_2) & _MASK32
    acc ^= acc >> 13
    acc = (acc * _PRIME32_3) & _MASK32
    acc ^= acc >> 16
    return acc
