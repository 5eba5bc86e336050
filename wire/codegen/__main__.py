"""``python -m wire.codegen``: regenerate ``wire/generated/`` from the Kafka specs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wire.codegen.generator import SpecError, generate

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC_DIR = REPO_ROOT.parent / "shared" / "kafka-protocol"
DEFAULT_OUT_DIR = REPO_ROOT / "wire" / "generated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wire.codegen", description=__doc__)
    parser.add_argument(
        "--spec-dir", type=Path, default=DEFAULT_SPEC_DIR,
        help="folder holding messages/*.json and errors.tsv (default: %(default)s)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR,
        help="where the generated modules go (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not (args.spec_dir / "messages").is_dir():
        print(f"no messages/ folder in {args.spec_dir}", file=sys.stderr)
        return 2
    try:
        written = generate(args.spec_dir, args.out_dir)
    except SpecError as exc:
        print(f"cannot generate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} modules to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
