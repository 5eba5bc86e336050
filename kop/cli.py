"""The `kop` command line: standalone, storage-node (and, later, broker, admin)."""

from __future__ import annotations

import argparse
import logging
import sys

from kop.broker import BrokerConfig
from kop.configs import BROKER_DEFAULTS
from kop.naming import Namespace


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kop", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    standalone = sub.add_parser("standalone", help="broker + storage node + embedded metadata")
    standalone.add_argument("--data-dir", default="./kop-data")
    standalone.add_argument("--listen", default="127.0.0.1:9092", type=split_host_port,
                            help="HOST:PORT to accept Kafka clients on (port 0: any free port)")
    standalone.add_argument("--advertised-listener", default=None, type=split_host_port,
                            help="HOST:PORT clients are told to connect to (default: --listen)")
    standalone.add_argument("--set", action="append", default=[], type=_setting,
                            metavar="NAME=VALUE", help="a broker setting, e.g. num.partitions=3")
    standalone.add_argument("--tenant", default="public",
                            help="native tenant holding Kafka topics (default: public)")
    standalone.add_argument("--namespace", default="default",
                            help="native namespace holding Kafka topics (default: default)")

    # Its options are the storage node's own (`kop storage-node --help` lists them).
    sub.add_parser("storage-node", add_help=False,
                   help="a storage node serving replicated ledgers (--data-dir, --listen, "
                        "--metadata, ...)")
    return parser


def _configure_logging(level: str) -> None:
    from twisted.logger import STDLibLogObserver, globalLogBeginner

    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    globalLogBeginner.beginLoggingTo([STDLibLogObserver()], redirectStandardIO=False)


def _run_standalone(args: argparse.Namespace) -> int:
    from twisted.internet import defer

    from kop.standalone import run_until_signalled, start_standalone

    listen_host, listen_port = args.listen
    advertised_host, advertised_port = args.advertised_listener or args.listen
    settings = dict(BROKER_DEFAULTS)
    settings.update(dict(args.set))
    config = BrokerConfig(host=advertised_host, port=advertised_port, settings=settings,
                          namespace=Namespace(args.tenant, args.namespace))
    return run_until_signalled(lambda: defer.ensureDeferred(
        start_standalone(args.data_dir, listen_host, listen_port, config)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["storage-node"]:
        from storage.node.__main__ import main as storage_node_main

        return storage_node_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "standalone":
        _configure_logging(args.log_level)
        return _run_standalone(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
