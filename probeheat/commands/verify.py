"""`probeheat verify PATH`: exit 0 when the bundle is sound, 1 with one line per problem."""

from __future__ import annotations

import sys

HELP = "check a bundle's checksums, sizes, stray files and tensor shapes (exit 1 on any problem)"


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="+", help="bundle folder(s)")
    parser.add_argument("--quiet", action="store_true", help="print problems only")


def run(args) -> int:
    from ..bundle import verify_bundle

    status = 0
    for path in args.path:
        problems = verify_bundle(path)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            status = 1
        elif not args.quiet:
            print(f"{path}: ok")
    return status
