"""Tunables of one managed ledger: replication, rollover, retention, cache."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass
class ManagedLedgerConfig:
    """Replication (E/Qw/Qa) applies to ledgers created from now on; rollover thresholds and
    retention apply from the next append / maintenance run. None retention = keep forever."""

    ensemble_size: int = 1
    write_quorum: int = 1
    ack_quorum: int = 1
    max_entries_per_ledger: int = 50_000
    max_ledger_bytes: int = 256 * MIB
    max_ledger_age_seconds: float = 4 * 3600.0
    retention_seconds: float | None = None
    retention_bytes: int | None = None
    cache_bytes: int = 64 * MIB
    # How often an open managed ledger rolls an idle, aged ledger and applies retention.
    maintenance_interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        if not 1 <= self.ack_quorum <= self.write_quorum <= self.ensemble_size:
            raise ValueError(
                "need 1 <= ack_quorum <= write_quorum <= ensemble_size, got "
                f"E={self.ensemble_size} Qw={self.write_quorum} Qa={self.ack_quorum}"
            )
        positive = {
            "max_entries_per_ledger": self.max_entries_per_ledger,
            "max_ledger_bytes": self.max_ledger_bytes,
            "max_ledger_age_seconds": self.max_ledger_age_seconds,
            "maintenance_interval_seconds": self.maintenance_interval_seconds,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        non_negative = {
            "retention_seconds": self.retention_seconds,
            "retention_bytes": self.retention_bytes,
            "cache_bytes": self.cache_bytes,
        }
        for name, value in non_negative.items():
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value!r}")
