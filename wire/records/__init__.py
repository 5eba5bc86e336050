"""Kafka record data: RecordBatch v2, records, legacy message sets and compression codecs.

Sans-io and dependency-light (``crc32c`` and ``cramjam``, both C/Rust). Every decoder raises
only subclasses of ``wire.records.errors.RecordsError`` (itself a ``wire.errors.DecodeError``)
and each error names the Kafka error code a broker answers with (``kafka_error_code``).

Public API, by module:

``wire.records.batch`` — the hot path, header only, no per-record work:
    ``BatchHeader`` (NamedTuple of the 61-byte header; ``compression``, ``timestamp_type``,
    ``is_transactional``, ``is_control``, ``has_delete_horizon``, ``has_producer_id``,
    ``size``, ``last_offset``, ``next_offset``, ``last_sequence``),
    ``read_header(buf, position=0) -> BatchHeader``,
    ``iter_batches(buf, *, allow_truncated_tail=False) -> Iterator[(position, BatchHeader)]``,
    ``verify_crc(buf, position, header)``, ``batch_crc(buf, position, header) -> int``,
    ``patch_base_offset(buf, position, base_offset)``,
    ``patch_partition_leader_epoch(buf, position, epoch)``,
    ``assign_offsets(buf, position, header, base_offset, partition_leader_epoch) -> BatchHeader``,
    ``set_log_append_time(buf, position, header, timestamp) -> BatchHeader`` (rewrites the CRC),
    ``write_header(buf, position, header) -> BatchHeader`` (header + fresh CRC),
    ``batch_attributes(compression, timestamp_type, *, transactional, control) -> int``,
    ``check_client_batch(header, position=0)`` (Kafka's header rules for Produce),
    ``check_produce_records(buf, *, single_batch=True) -> list[(position, BatchHeader)]``
    (Produce v3+: walk + CRC + rules, header only),
    ``peek_magic(buf) -> int | None``, ``Compression``, ``TimestampType``.

``wire.records.record`` — individual records, for features and tools:
    ``Record(offset, timestamp, key, value, headers)``, ``Header(key, value)``,
    ``decode_batch(buf, position=0, header=None, *, max_size, check_crc=True) -> list[Record]``,
    ``decode_records(buf, *, max_size, allow_truncated_tail=False) -> Iterator[(header, records)]``,
    ``BatchBuilder(...).append(value, *, key, headers, timestamp)`` / ``.build() -> bytes``,
    ``build_control_batch(ControlRecordType, *, producer_id, producer_epoch, coordinator_epoch)``,
    ``decode_control_record(record) -> ControlRecord``,
    ``validate_records(buf, position, header, *, require_keys, timestamp_range) -> list[RecordError]``.

``wire.records.legacy`` — magic 0/1 message sets:
    ``iter_legacy_messages(buf, *, max_size, allow_truncated_tail=False) -> Iterator[LegacyMessage]``,
    ``legacy_to_batch(buf, *, compression=None) -> bytes`` (Produce v0-v2 to a v2 batch),
    ``encode_message_set(records, *, magic, compression, timestamp_type) -> bytes``,
    ``batches_to_message_set(buf, *, magic) -> bytes`` (down-conversion for Fetch v0-v3).

``wire.records.compression`` — ``compress(codec, data)`` and
    ``decompress(codec, data, *, max_size)`` for gzip, snappy (raw and xerial), lz4 (frame)
    and zstd; decompression is bounded by ``max_size``.

``wire.records.errors`` — ``RecordsError`` > ``CorruptRecordError`` (``CrcMismatchError``,
    ``TruncatedBatchError``, ``UnsupportedMagicError``, ``CompressionError`` >
    ``UnsupportedCompressionError``, ``DecompressedTooLargeError``) and ``InvalidRecordError``
    (with ``record_index``).
"""
