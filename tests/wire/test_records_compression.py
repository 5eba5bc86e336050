"""Compression codecs: round trips, client formats (xerial snappy, lz4 frames), bombs, damage."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib

import cramjam
import pytest
from aiokafka import codec as client_codec
from hypothesis import given, settings
from hypothesis import strategies as st

from wire.records.batch import Compression
from wire.records.compression import XERIAL_MAGIC, compress, decompress, xxh32
from wire.records.errors import CompressionError, DecompressedTooLargeError

SAMPLE = b"".join(b"record %d with some repeated text; " % i for i in range(3000))
CODECS = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]


@pytest.mark.parametrize("codec", list(Compression))
def test_round_trip(codec: Compression) -> None:
    packed = compress(codec, SAMPLE)
    assert decompress(codec, packed, max_size=len(SAMPLE)) == SAMPLE
    if codec != Compression.NONE:
        assert len(packed) < len(SAMPLE) // 4


@pytest.mark.parametrize("codec", list(Compression))
def test_empty_payload_round_trips(codec: Compression) -> None:
    assert decompress(codec, compress(codec, b""), max_size=0) == b""


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200_000), codec=st.sampled_from(list(Compression)))
def test_any_bytes_round_trip(data: bytes, codec: Compression) -> None:
    assert decompress(codec, compress(codec, data), max_size=len(data)) == data


# --- what clients write and read ---------------------------------------------------------------


@pytest.mark.parametrize(
    "encode, codec",
    [
        (client_codec.gzip_encode, Compression.GZIP),
        (lambda data: client_codec.snappy_encode(data, xerial_compatible=True), Compression.SNAPPY),
        (
            lambda data: client_codec.snappy_encode(data, xerial_compatible=False),
            Compression.SNAPPY,
        ),
        (client_codec.lz4_encode, Compression.LZ4),
        (client_codec.zstd_encode, Compression.ZSTD),
    ],
)
def test_decodes_what_the_client_writes(encode, codec: Compression) -> None:
    assert decompress(codec, encode(SAMPLE), max_size=len(SAMPLE)) == SAMPLE


def test_xerial_snappy_with_many_blocks() -> None:
    packed = client_codec.snappy_encode(SAMPLE, xerial_compatible=True, xerial_blocksize=1000)
    assert packed.startswith(XERIAL_MAGIC)
    assert decompress(Compression.SNAPPY, packed, max_size=len(SAMPLE)) == SAMPLE


@pytest.mark.parametrize(
    "decode, codec",
    [
        (client_codec.gzip_decode, Compression.GZIP),
        (client_codec.snappy_decode, Compression.SNAPPY),
        (client_codec.lz4_decode, Compression.LZ4),
        (client_codec.zstd_decode, Compression.ZSTD),
    ],
)
def test_client_decodes_what_we_write(decode, codec: Compression) -> None:
    assert decode(compress(codec, SAMPLE)) == SAMPLE


def test_snappy_is_written_raw_like_librdkafka() -> None:
    packed = compress(Compression.SNAPPY, SAMPLE)
    assert not packed.startswith(XERIAL_MAGIC)
    assert bytes(cramjam.snappy.decompress_raw(packed)) == SAMPLE


def test_lz4_is_written_with_independent_blocks_and_no_checksums() -> None:
    packed = compress(Compression.LZ4, SAMPLE)
    flg, bd = packed[4], packed[5]
    assert flg == 0x60  # version 01, independent blocks, no checksums, no content size
    assert bd == 0x40  # 64 KiB blocks
    assert packed[6] == (xxh32(packed[4:6]) >> 8) & 0xFF


def test_lz4_frames_with_linked_blocks_and_checksums_decode() -> None:
    packed = bytes(cramjam.lz4.compress(SAMPLE))
    assert decompress(Compression.LZ4, packed, max_size=len(SAMPLE)) == SAMPLE


def test_concatenated_gzip_members_decode() -> None:
    packed = compress(Compression.GZIP, b"first ") + compress(Compression.GZIP, b"second")
    assert decompress(Compression.GZIP, packed, max_size=100) == b"first second"


def test_legacy_lz4_checksum_of_magic_zero() -> None:
    packed = compress(Compression.LZ4, SAMPLE, legacy_lz4_checksum=True)
    assert packed[6] == (xxh32(packed[0:6]) >> 8) & 0xFF  # KAFKA-3160: magic included
    assert (
        decompress(Compression.LZ4, packed, max_size=len(SAMPLE), legacy_lz4_checksum=True)
        == SAMPLE
    )
    with pytest.raises(CompressionError):
        decompress(Compression.LZ4, packed, max_size=len(SAMPLE))
    correct = compress(Compression.LZ4, SAMPLE)
    assert (
        decompress(Compression.LZ4, correct, max_size=len(SAMPLE), legacy_lz4_checksum=True)
        == SAMPLE
    )


@pytest.mark.parametrize(
    "data, expected",
    [(b"", 0x02CC5D05), (b"a", 0x550D7456), (b"abc", 0x32D153FF),
     (b"Nobody inspects the spammish repetition", 0xE2293B2F)],
)  # fmt: skip
def test_xxh32_known_values(data: bytes, expected: int) -> None:
    assert xxh32(data) == expected


# --- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", list(Compression))
def test_output_over_the_limit_is_refused(codec: Compression) -> None:
    packed = compress(codec, SAMPLE)
    assert decompress(codec, packed, max_size=len(SAMPLE)) == SAMPLE
    with pytest.raises(DecompressedTooLargeError) as raised:
        decompress(codec, packed, max_size=len(SAMPLE) - 1)
    assert raised.value.kafka_error_code == 10


def test_raw_snappy_declaring_a_huge_length_is_refused_before_decompressing() -> None:
    declares_4_gib = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10
    with pytest.raises(DecompressedTooLargeError):
        decompress(Compression.SNAPPY, declares_4_gib, max_size=1 << 20)


BOMB_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import cramjam
    from wire.records.batch import Compression
    from wire.records.compression import compress, decompress
    from wire.records.errors import DecompressedTooLargeError

    MIB = 1 << 20
    zeros = bytes(MIB)
    # 1 GiB of output from a few KiB of input: repeat a member/frame/block of 1 MiB of zeros.
    gzip_member = compress(Compression.GZIP, zeros)
    zstd_frame = compress(Compression.ZSTD, zeros)
    lz4_frame = compress(Compression.LZ4, zeros)
    lz4_header, lz4_block = lz4_frame[:7], lz4_frame[7:-4]
    snappy_block = bytes(cramjam.snappy.compress_raw(zeros))
    bombs = {
        "gzip": (Compression.GZIP, gzip_member * 1024),
        "zstd": (Compression.ZSTD, zstd_frame * 1024),
        "lz4": (Compression.LZ4, lz4_header + lz4_block * 1024 + bytes(4)),
        "snappy": (Compression.SNAPPY, b"\\x82SNAPPY\\x00" + bytes((0, 0, 0, 1, 0, 0, 0, 1))
                   + (len(snappy_block).to_bytes(4, "big") + snappy_block) * 1024),
    }
    del zeros
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, (codec, bomb) in bombs.items():
        try:
            decompress(codec, bomb, max_size=8 * MIB)
        except DecompressedTooLargeError:
            print(name, "refused")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print("grown_kib", grown_kib)
    """
)


def test_decompression_bombs_are_refused_with_bounded_memory() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=True,
    )
    lines = result.stdout.split("\n")
    for name in ("gzip", "zstd", "lz4", "snappy"):
        assert f"{name} refused" in lines
    grown_kib = int(next(line for line in lines if line.startswith("grown_kib")).split()[1])
    # 1 GiB each if unbounded; the limit is 8 MiB plus input copies and allocator slack.
    assert grown_kib < 64 * 1024


# --- damage --------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_payload_is_a_compression_error(codec: Compression) -> None:
    packed = compress(codec, SAMPLE)
    for cut in (1, len(packed) // 2, len(packed) - 1):
        with pytest.raises(CompressionError):
            decompress(codec, packed[:cut], max_size=len(SAMPLE))


@pytest.mark.parametrize("codec", CODECS)
def test_garbage_is_a_compression_error(codec: Compression) -> None:
    with pytest.raises(CompressionError) as raised:
        decompress(codec, b"\x13" * 64, max_size=1 << 20)
    assert raised.value.kafka_error_code == 2


@pytest.mark.parametrize("codec", CODECS)
def test_empty_input_is_a_compression_error(codec: Compression) -> None:
    with pytest.raises(CompressionError):
        decompress(codec, b"", max_size=1 << 20)


def test_gzip_with_damaged_body_is_a_compression_error() -> None:
    packed = bytearray(compress(Compression.GZIP, SAMPLE))
    packed[len(packed) // 2] ^= 0xFF
    with pytest.raises(CompressionError):
        decompress(Compression.GZIP, packed, max_size=len(SAMPLE))


def test_gzip_trailing_garbage_is_a_compression_error() -> None:
    packed = compress(Compression.GZIP, SAMPLE) + b"junk"
    with pytest.raises(CompressionError):
        decompress(Compression.GZIP, packed, max_size=len(SAMPLE))


def test_plain_zlib_is_not_gzip() -> None:
    with pytest.raises(CompressionError):
        decompress(Compression.GZIP, zlib.compress(SAMPLE), max_size=len(SAMPLE))


@pytest.mark.parametrize("codec", [5, 6, 7, -1])
def test_unknown_codec_ids_are_refused(codec: int) -> None:
    with pytest.raises(CompressionError):
        decompress(codec, b"x", max_size=10)
    with pytest.raises(CompressionError):
        compress(codec, b"x")
