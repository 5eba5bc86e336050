"""The `kop` command line: standalone, broker, storage-node, admin."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    standalone = sub.add_parser("standalone", help="broker + storage node + embedded metadata")
    standalone.add_argument("--data-dir", default="./kop-data")
    standalone.add_argument("--listen", default="127.0.0.1:9092")
    standalone.add_argument("--advertised-listener", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "standalone":
        print("kop standalone: not yet implemented", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
