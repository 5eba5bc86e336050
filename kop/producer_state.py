"""Idempotent-producer state of one partition: epochs, sequences and recent batches.

Kafka's rules, per producer id:
- a batch from an older epoch is refused (INVALID_PRODUCER_EPOCH);
- the first batch of a new epoch must start at sequence 0, unless the producer is unknown
  (its state was never seen or has been removed with the data);
- within an epoch a batch must start right after the last accepted sequence
  (OUT_OF_ORDER_SEQUENCE_NUMBER otherwise), sequences wrapping at 2**31 - 1;
- a batch equal to one of the last five accepted is a retry: it is acknowledged again with
  its original offset and not stored twice;
- a transaction marker from an older producer epoch is refused (INVALID_PRODUCER_EPOCH), and
  one from a coordinator older than the last that wrote a marker for the producer here
  (TRANSACTION_COORDINATOR_FENCED): a coordinator that lost its `__transaction_state`
  partition but does not know it yet cannot end a transaction its successor has moved on from.
The table is checked and updated synchronously when offsets are assigned, before the append
is durable, so pipelined batches of one producer are judged in arrival order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kop.errors import KafkaError
from wire.generated.error_codes import ErrorCode

NO_PRODUCER_ID = -1
NO_EPOCH = -1
NO_COORDINATOR_EPOCH = -1
MAX_SEQUENCE = 2**31 - 1
RETAINED_BATCHES = 5  # Kafka's limit on in-flight requests of an idempotent producer


@dataclass(frozen=True)
class BatchRecord:
    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int


@dataclass
class ProducerEntry:
    epoch: int
    batches: deque[BatchRecord] = field(default_factory=lambda: deque(maxlen=RETAINED_BATCHES))
    coordinator_epoch: int = NO_COORDINATOR_EPOCH  # of the last marker written for it

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1


def next_sequence(sequence: int) -> int:
    return 0 if sequence == MAX_SEQUENCE else sequence + 1


def last_sequence_of(first_sequence: int, record_count: int) -> int:
    return (first_sequence + record_count - 1) % (MAX_SEQUENCE + 1)


class ProducerStateTable:
    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def epoch_of(self, producer_id: int) -> int:
        entry = self._producers.get(producer_id)
        return entry.epoch if entry else NO_EPOCH

    def check(
        self, producer_id: int, epoch: int, first_sequence: int, last_sequence: int
    ) -> BatchRecord | None:
        """Judge a batch. Returns the original batch if this one is a retry of it."""
        entry = self._producers.get(producer_id)
        if entry is None:
            return None
        if epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"Producer {producer_id} epoch {epoch} is older than the current {entry.epoch}",
            )
        if epoch > entry.epoch:
            if first_sequence != 0:
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"New epoch {epoch} of producer {producer_id} must start at sequence 0, "
                    f"not {first_sequence}",
                )
            return None
        for batch in entry.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return batch
        if entry.batches and first_sequence != next_sequence(entry.last_sequence):
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"Out of order sequence for producer {producer_id}: expected "
                f"{next_sequence(entry.last_sequence)}, got {first_sequence}",
            )
        return None

    def record(
        self,
        producer_id: int,
        epoch: int,
        first_sequence: int,
        last_sequence: int,
        first_offset: int,
        last_offset: int,
    ) -> None:
        entry = self._producers.get(producer_id)
        if entry is None or entry.epoch != epoch:
            entry = ProducerEntry(epoch)
            self._producers[producer_id] = entry
        entry.batches.append(BatchRecord(first_sequence, last_sequence, first_offset, last_offset))

    def check_marker(self, producer_id: int, epoch: int, coordinator_epoch: int) -> None:
        """Judge a transaction marker before it is written (in Kafka's order: producer
        epoch, then coordinator epoch)."""
        entry = self._producers.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"marker epoch {epoch} of producer {producer_id} is older than {entry.epoch}",
            )
        if coordinator_epoch < entry.coordinator_epoch:
            raise KafkaError(
                ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                f"marker for producer {producer_id} from coordinator epoch {coordinator_epoch}; "
                f"epoch {entry.coordinator_epoch} has written here since",
            )

    def record_marker(self, producer_id: int, epoch: int, coordinator_epoch: int) -> None:
        """A marker was written: a newer producer epoch starts with no batches."""
        entry = self._producers.get(producer_id)
        if entry is None or epoch > entry.epoch:
            entry = self._producers[producer_id] = ProducerEntry(epoch)
        entry.coordinator_epoch = max(entry.coordinator_epoch, coordinator_epoch)

    def snapshot(self, durable_end: int) -> dict[str, Any]:
        """The table as of offset `durable_end`: batches at or past it (still in flight,
        possibly never stored) are left out."""
        return {
            str(pid): [entry.epoch, [[b.first_sequence, b.last_sequence, b.first_offset,
                                      b.last_offset]
                                     for b in entry.batches if b.first_offset < durable_end],
                       entry.coordinator_epoch]
            for pid, entry in self._producers.items()
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> ProducerStateTable:
        table = cls()
        for pid, (epoch, batches, *rest) in snapshot.items():
            # Snapshots written before coordinator epochs were kept have two fields.
            entry = ProducerEntry(int(epoch),
                                  coordinator_epoch=int(rest[0]) if rest else NO_COORDINATOR_EPOCH)
            for values in batches:
                entry.batches.append(BatchRecord(*map(int, values)))
            table._producers[int(pid)] = entry
        return table
