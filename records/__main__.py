"""`python -m records upgrade`: bring the database named by XINQIAO_DATABASE_URL to the newest schema."""

from __future__ import annotations

import argparse
import os
import sys

from records.migrate import upgrade
from records.settings import default_database_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m records")
    parser.add_argument("command", choices=["upgrade"])
    parser.add_argument("--revision", default="head")
    args = parser.parse_args(argv)
    url = os.environ.get("XINQIAO_DATABASE_URL") or default_database_url()
    upgrade(url, args.revision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
