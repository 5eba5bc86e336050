"""The `kop` command line: standalone, broker, storage-node, auto-recovery, dev-cluster."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from kop.broker import BrokerConfig, ReplicationSettings
from kop.configs import BROKER_DEFAULTS
from kop.naming import Namespace

if TYPE_CHECKING:
    from storage.ledger.auto_recovery import AutoRecoverySettings


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got '{value}'")
    return host, int(port)


def _setting(value: str) -> tuple[str, str]:
    name, sep, setting = value.partition("=")
    if not sep or name not in BROKER_DEFAULTS:
        known = ", ".join(sorted(BROKER_DEFAULTS))
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of: {known}")
    return name, setting


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{value}'")
    return int(value)


def _broker_id(value: str) -> int:
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"expected a broker id 0..{2**31 - 1}, got '{value}'")
    return int(value)


def _add_broker_options(parser: argparse.ArgumentParser) -> None:
    """Options every Kafka-facing broker takes (standalone and cluster)."""
    parser.add_argument("--listen", default="127.0.0.1:9092", type=split_host_port,
                        help="HOST:PORT to accept Kafka clients on (port 0: any free port)")
    parser.add_argument("--advertised-listener", default=None, type=split_host_port,
                        help="HOST:PORT clients are told to connect to (default: --listen)")
    parser.add_argument("--set", action="append", default=[], type=_setting,
                        metavar="NAME=VALUE", help="a broker setting, e.g. num.partitions=3")
    parser.add_argument("--tenant", default="public",
                        help="native tenant holding Kafka topics (default: public)")
    parser.add_argument("--namespace", default="default",
                        help="native namespace holding Kafka topics (default: default)")


def _add_replication_options(parser: argparse.ArgumentParser, defaults: tuple[int, int, int]
                             ) -> None:
    ensemble, write_quorum, ack_quorum = defaults
    parser.add_argument("--ensemble-size", type=_positive, default=ensemble,
                        help=f"storage nodes per ledger (default {ensemble})")
    parser.add_argument("--write-quorum", type=_positive, default=write_quorum,
                        help=f"copies of each entry (default {write_quorum})")
    parser.add_argument("--ack-quorum", type=_positive, default=ack_quorum,
                        help=f"copies confirmed before a write is acknowledged "
                             f"(default {ack_quorum})")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got '{value}'")
    return seconds


def _positive_seconds(value: str) -> float:
    seconds = _seconds(value)
    if seconds == 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got '{value}'")
    return seconds


def _add_auto_recovery_options(parser: argparse.ArgumentParser) -> None:
    """Auto-recovery as every cluster broker runs it (storage/ledger/auto_recovery.py)."""
    from storage.ledger.auto_recovery import AutoRecoverySettings

    defaults = AutoRecoverySettings()
    parser.add_argument("--no-auto-recovery", action="store_true",
                        help="do not re-replicate ledgers in this broker (run `kop "
                             "auto-recovery` elsewhere instead)")
    parser.add_argument("--recovery-grace-period", type=_seconds, metavar="SECONDS",
                        default=defaults.grace_period,
                        help="how long a storage node may be away before its ledgers are "
                             f"re-replicated (default {defaults.grace_period:g})")
    parser.add_argument("--recovery-audit-interval", type=_positive_seconds, metavar="SECONDS",
                        default=defaults.audit_interval,
                        help="full audits at least this often, besides every storage-node "
                             f"change (default {defaults.audit_interval:g})")
    parser.add_argument("--recovery-retry-interval", type=_positive_seconds, metavar="SECONDS",
                        default=defaults.retry_interval,
                        help="how often ledgers that could not be repaired yet are tried "
                             f"again (default {defaults.retry_interval:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kop", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    standalone = sub.add_parser("standalone", help="broker + storage node + embedded metadata")
    standalone.add_argument("--data-dir", default="./kop-data")
    _add_broker_options(standalone)

    broker = sub.add_parser("broker", help="one broker of a cluster (metadata in ZooKeeper)")
    broker.add_argument("--metadata", required=True,
                        help="ZooKeeper URL, e.g. zk://10.0.0.1:2181,10.0.0.2:2181/kop"
                             "[?session_timeout=SECONDS]")
    broker.add_argument("--broker-id", type=_broker_id, default=None,
                        help="this broker's id (default: a new id from ZooKeeper; give one to "
                             "keep it across restarts)")
    _add_broker_options(broker)
    _add_replication_options(broker, (3, 2, 2))
    _add_auto_recovery_options(broker)

    dev = sub.add_parser("dev-cluster", help="ZooKeeper, storage nodes and brokers on loopback")
    dev.add_argument("--brokers", type=_positive, default=3)
    dev.add_argument("--storage-nodes", type=_positive, default=3)
    dev.add_argument("--base-dir", default=None,
                     help="where data and logs go (default: a new temporary directory); "
                          "reusing it keeps ports, topics and records")
    dev.add_argument("--session-timeout", type=float, default=6.0,
                     help="ZooKeeper session timeout of every process, seconds (default 6)")
    dev.add_argument("--set", action="append", default=[], type=_setting,
                     metavar="NAME=VALUE", help="a broker setting, e.g. num.partitions=3")
    dev.add_argument("--recovery-grace-period", type=_seconds, default=30.0, metavar="SECONDS",
                     help="how long a storage node may be away before the brokers' "
                          "auto-recovery re-replicates its ledgers (default 30)")

    # Their options are the services' own (`kop storage-node --help` lists them).
    sub.add_parser("storage-node", add_help=False,
                   help="a storage node serving replicated ledgers (--data-dir, --listen, "
                        "--metadata, ...)")
    sub.add_parser("auto-recovery", add_help=False,
                   help="re-replication on its own (every broker runs it too): --metadata, "
                        "--grace-period, ...")
    return parser


def _configure_logging(level: str) -> None:
    from twisted.logger import STDLibLogObserver, globalLogBeginner

    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    globalLogBeginner.beginLoggingTo([STDLibLogObserver()], redirectStandardIO=False)


def _broker_config(args: argparse.Namespace) -> BrokerConfig:
    advertised_host, advertised_port = args.advertised_listener or args.listen
    settings = dict(BROKER_DEFAULTS)
    settings.update(dict(args.set))
    return BrokerConfig(host=advertised_host, port=advertised_port, settings=settings,
                        namespace=Namespace(args.tenant, args.namespace))


def _run_standalone(args: argparse.Namespace) -> int:
    from twisted.internet import defer

    from kop.standalone import run_until_signalled, start_standalone

    listen_host, listen_port = args.listen
    config = _broker_config(args)
    return run_until_signalled(lambda: defer.ensureDeferred(
        start_standalone(args.data_dir, listen_host, listen_port, config)))


def _replication(args: argparse.Namespace, parser: argparse.ArgumentParser
                 ) -> ReplicationSettings:
    if not args.ensemble_size >= args.write_quorum >= args.ack_quorum:
        parser.error("need --ensemble-size >= --write-quorum >= --ack-quorum")
    return ReplicationSettings(args.ensemble_size, args.write_quorum, args.ack_quorum)


def auto_recovery_settings(args: argparse.Namespace) -> AutoRecoverySettings | None:
    """The broker's auto-recovery settings, or None when it runs none."""
    from storage.ledger.auto_recovery import AutoRecoverySettings

    if args.no_auto_recovery:
        return None
    return AutoRecoverySettings(grace_period=args.recovery_grace_period,
                                audit_interval=args.recovery_audit_interval,
                                retry_interval=args.recovery_retry_interval)


def _run_broker(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from twisted.internet import defer

    from kop.cluster.registration import ClusterError
    from kop.cluster.runner import start_cluster_broker, zookeeper_location
    from kop.standalone import run_until_signalled

    try:
        zookeeper_location(args.metadata)
    except ClusterError as exc:
        parser.error(str(exc))
    listen_host, listen_port = args.listen
    config = _broker_config(args)
    config.node_id = -1 if args.broker_id is None else args.broker_id
    config.replication = _replication(args, parser)
    auto_recovery = auto_recovery_settings(args)
    return run_until_signalled(lambda: defer.ensureDeferred(
        start_cluster_broker(args.metadata, listen_host, listen_port, config,
                             auto_recovery=auto_recovery)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["storage-node"]:
        from storage.node.__main__ import main as storage_node_main

        return storage_node_main(argv[1:])
    if argv[:1] == ["auto-recovery"]:
        from storage.ledger.auto_recovery import main as auto_recovery_main

        return auto_recovery_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "standalone":
        _configure_logging(args.log_level)
        return _run_standalone(args)
    if args.command == "broker":
        _configure_logging(args.log_level)
        return _run_broker(args, parser)
    if args.command == "dev-cluster":
        from kop.cluster.dev_cluster import run_dev_cluster

        return run_dev_cluster(args.brokers, args.storage_nodes, args.base_dir,
                               session_timeout=args.session_timeout, settings=dict(args.set),
                               log_level=args.log_level,
                               recovery_grace_period=args.recovery_grace_period)
    return 2


if __name__ == "__main__":
    sys.exit(main())
