"""Command line: ``python -m derivations verify [ID ...]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivations")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="prove every SymPy claim and derivation, one row each")
    verify.add_argument("ids", nargs="*", help="claim or derivation ids (default: all)")
    verify.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    verify.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)

    from .symbolic.verify import default_workers, format_table, verify_all

    try:
        results = verify_all(args.ids or None, workers=args.workers or default_workers())
    except KeyError as error:
        print(error.args[0], file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        import dataclasses
        import json

        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([dataclasses.asdict(r) for r in results], out, indent=1)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
