"""`python -m storage.node --data-dir DIR --listen HOST:PORT [--metadata URL]`: run a node."""

from __future__ import annotations

import argparse
import sys

from storage.node.core import StorageNodeConfig
from storage.node.main import DEFAULT_LEDGER_GC_INTERVAL, run_storage_node


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m storage.node",
                                     description="Run a kop storage node.")
    parser.add_argument("--data-dir", required=True, help="directory holding the node's data")
    parser.add_argument("--listen", default="127.0.0.1:3181",
                        help="HOST:PORT to serve on (port 0: any free port)")
    parser.add_argument("--metadata", default=None,
                        help="metadata store URL to register in (zk://... or a directory)")
    parser.add_argument("--advertised-address", default=None,
                        help="HOST:PORT clients should dial (default: the listen address)")
    parser.add_argument("--segment-bytes", type=int, default=StorageNodeConfig.segment_bytes,
                        help="journal segment size; a full segment is sealed and checkpointed")
    parser.add_argument("--gc-interval", type=float, default=StorageNodeConfig.gc_interval_seconds,
                        help="seconds between garbage collections (0: never)")
    parser.add_argument("--ledger-gc-interval", type=float, default=DEFAULT_LEDGER_GC_INTERVAL,
                        help="seconds between scans for ledgers whose metadata is gone, "
                             "deleted after two scans (0: never; needs --metadata)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = StorageNodeConfig(segment_bytes=args.segment_bytes,
                                   gc_interval_seconds=args.gc_interval or None)
    except ValueError as error:
        print(f"kop storage node: {error}", file=sys.stderr)
        return 2
    return run_storage_node(args.data_dir, args.listen, args.metadata,
                            advertised_address=args.advertised_address, config=config,
                            ledger_gc_interval=args.ledger_gc_interval or None)


if __name__ == "__main__":
    sys.exit(main())
