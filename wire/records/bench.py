"""Micro-benchmark of the produce-path batch work: ``python -m wire.records.bench``.

Measures, per 16 KiB RecordBatch (uncompressed records, as a producer sends them), the cost
of what a broker does to each batch on Produce: walk the blob and read the header (one
``struct.unpack_from``), verify the CRC-32C, check Kafka's header rules, and stamp the base
offset and partition leader epoch in place. Also, for comparison, decoding every record of
the same batch (the path the broker avoids). Prints microseconds per batch; not a test.
"""

from __future__ import annotations

import timeit

from wire.records.batch import (
    assign_offsets,
    check_client_batch,
    iter_batches,
    read_header,
    verify_crc,
)
from wire.records.record import BatchBuilder, decode_batch

BATCH_BYTES = 16 * 1024
RECORD_VALUE = b"v" * 100


def sixteen_kib_batch() -> bytearray:
    builder = BatchBuilder(producer_id=1, producer_epoch=0, base_sequence=0)
    while True:
        builder.append(RECORD_VALUE, key=b"key", timestamp=1_700_000_000_000)
        batch = builder.build()
        if len(batch) >= BATCH_BYTES:
            return bytearray(batch)


def per_call_us(function, repeat: int = 5, number: int = 2000) -> float:
    best = min(timeit.repeat(function, repeat=repeat, number=number))
    return best / number * 1e6


def main() -> None:
    buffer = sixteen_kib_batch()
    header = read_header(buffer)

    def produce_path() -> None:
        for position, batch_header in iter_batches(buffer):
            verify_crc(buffer, position, batch_header)
            check_client_batch(batch_header, position)
            assign_offsets(buffer, position, batch_header, 1234, 7)

    results = {
        "header parse (read_header)": per_call_us(lambda: read_header(buffer)),
        "CRC-32C verify": per_call_us(lambda: verify_crc(buffer, 0, header)),
        "base offset + leader epoch patch": per_call_us(
            lambda: assign_offsets(buffer, 0, header, 1234, 7)
        ),
        "produce path (walk + CRC + rules + patch)": per_call_us(produce_path),
        "decode every record (not on the hot path)": per_call_us(
            lambda: decode_batch(buffer, 0, header), number=100
        ),
    }
    print(f"batch: {len(buffer)} bytes, {header.record_count} records")
    for name, microseconds in results.items():
        print(f"{name:45s} {microseconds:9.2f} µs/batch")


if __name__ == "__main__":
    main()
