"""``python -m exeunit.forwarder [DEST]``: build yagna-forward (if missing or older than its
source) and print its path. Exit 1 with the reason when it cannot be built."""

from __future__ import annotations

import sys
from pathlib import Path

from exeunit.errors import RuntimeFailure
from exeunit.forwarder import build


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python -m exeunit.forwarder [DEST]", file=sys.stderr)
        return 2
    try:
        path = build(Path(argv[0]) if argv else None)
    except RuntimeFailure as e:
        print(f"exeunit.forwarder: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
