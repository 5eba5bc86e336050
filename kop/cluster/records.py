"""What cluster mode keeps in the metadata store, and the JSON records it writes there.

Layout (below the store's root, e.g. the ZooKeeper chroot):

    /brokers/<id>                                   ephemeral BrokerRecord: a live broker
    /broker-id-counter                              last broker id handed out automatically
    /ownership/<tenant>/<namespace>/<topic>/<n>     ephemeral ClaimRecord: who serves partition n
    /leader-epochs/<tenant>/<namespace>/<topic>/<n> persistent: the partition's last leader epoch

A claim is created once and never changed, only deleted (by its holder, or by ZooKeeper when
the holder's session ends). The leader-epoch node is bumped with compare-and-set before every
claim, so leader epochs only ever grow, whoever claims.

Records come from other processes (or a damaged store): decoding checks every field and
raises ClusterRecordError, naming the path, instead of letting a KeyError escape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kop.naming import Namespace

BROKERS_PATH = "/brokers"
BROKER_ID_COUNTER_PATH = "/broker-id-counter"
OWNERSHIP_ROOT = "/ownership"
LEADER_EPOCHS_ROOT = "/leader-epochs"


class ClusterRecordError(ValueError):
    """A cluster record in the metadata store that cannot be understood."""


def broker_path(broker_id: int) -> str:
    return f"{BROKERS_PATH}/{broker_id}"


@dataclass(frozen=True)
class ClusterPaths:
    """Paths of one Kafka namespace's ownership records."""

    namespace: Namespace

    def claims_of(self, topic: str) -> str:
        return f"{OWNERSHIP_ROOT}/{self.namespace.tenant}/{self.namespace.namespace}/{topic}"

    def claim(self, topic: str, partition: int) -> str:
        return f"{self.claims_of(topic)}/{partition}"

    def leader_epoch(self, topic: str, partition: int) -> str:
        return (f"{LEADER_EPOCHS_ROOT}/{self.namespace.tenant}/{self.namespace.namespace}/"
                f"{topic}/{partition}")


def _decode_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ClusterRecordError(f"{where}: not a JSON record ({exc})") from None
    if not isinstance(record, dict):
        raise ClusterRecordError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _field(record: dict[str, Any], name: str, kind: type, where: str, *,
           optional: bool = False) -> Any:
    value = record.get(name)
    if value is None and optional:
        return None
    # bool is an int in Python; a flag where a number belongs is damage, not a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ClusterRecordError(f"{where}: field {name!r} should be {kind.__name__}, "
                                 f"got {value!r}")
    return value


@dataclass(frozen=True)
class BrokerRecord:
    """A live broker: where clients reach it, and which registration of it this is.

    `incarnation` is a random token chosen at each registration; a claim carries the token
    of the registration that made it, so a broker never mistakes a claim left by an earlier
    life of itself (same id, older session) for its own. `leaving` is set by a broker that
    is stopping gracefully: others stop designating partitions to it.
    """

    broker_id: int
    host: str
    port: int
    incarnation: str
    rack: str | None = None
    leaving: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"host": self.host, "port": self.port, "rack": self.rack,
                           "incarnation": self.incarnation, "leaving": self.leaving},
                          sort_keys=True).encode()

    @classmethod
    def from_json(cls, broker_id: int, data: bytes) -> BrokerRecord:
        where = broker_path(broker_id)
        record = _decode_object(data, where)
        port = _field(record, "port", int, where)
        if not 0 < port < 65536:
            raise ClusterRecordError(f"{where}: port {port} out of range")
        return cls(broker_id=broker_id, host=_field(record, "host", str, where), port=port,
                   incarnation=_field(record, "incarnation", str, where),
                   rack=_field(record, "rack", str, where, optional=True),
                   leaving=bool(_field(record, "leaving", bool, where, optional=True)))


@dataclass(frozen=True)
class ClaimRecord:
    """A partition's current owner and the leader epoch it claimed it with."""

    broker_id: int
    epoch: int
    incarnation: str

    def to_json(self) -> bytes:
        return json.dumps({"broker": self.broker_id, "epoch": self.epoch,
                           "incarnation": self.incarnation}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> ClaimRecord:
        record = _decode_object(data, where)
        epoch = _field(record, "epoch", int, where)
        if epoch < 0:
            raise ClusterRecordError(f"{where}: negative leader epoch {epoch}")
        return cls(broker_id=_field(record, "broker", int, where), epoch=epoch,
                   incarnation=_field(record, "incarnation", str, where))


def encode_epoch(epoch: int) -> bytes:
    return json.dumps({"epoch": epoch}).encode()


def decode_epoch(data: bytes, where: str) -> int:
    epoch = _field(_decode_object(data, where), "epoch", int, where)
    if epoch < 0:
        raise ClusterRecordError(f"{where}: negative leader epoch {epoch}")
    return epoch


def parse_broker_id(name: str) -> int | None:
    """The id in a /brokers child name, or None for a name that is not a broker id."""
    if not name.isdigit() or len(name) > 10:
        return None
    return int(name)
