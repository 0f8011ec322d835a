"""`python -m records …`: the store's maintenance commands, on the database named by XINQIAO_DATABASE_URL.

upgrade                 bring the schema to the newest migration
new-key                 print a new encryption key (put it first in XINQIAO_ENCRYPTION_KEYS)
rotate-keys             re-encrypt every stored secret under the first key
purge [--older-than-days N]   purge cases closed more than N days ago (XINQIAO_RETENTION_DAYS, 365)
export CASE_ID [-o FILE]      a case as JSON for a handover (audited)
create-admin HANDLE --name NAME   create a console administrator, or set an existing one's password
                        (from XINQIAO_ADMIN_PASSWORD, else asked twice; never printed)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from records.accounts import create_admin
from records.crypto import new_key
from records.db import with_session
from records.keys import rotate_all
from records.migrate import upgrade
from records.models import CounsellorRole, utcnow
from records.retention import export_case, purge_closed
from records.roster import add_counsellor, add_shift, set_paging
from records.settings import default_database_url


def _url() -> str:
    return os.environ.get("XINQIAO_DATABASE_URL") or default_database_url()


def _with_session(work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    return asyncio.run(with_session(_url(), work))


def _admin_password() -> str:
    """XINQIAO_ADMIN_PASSWORD for scripted set-ups, else typed twice without echo."""
    password = os.environ.get("XINQIAO_ADMIN_PASSWORD")
    if password:
        return password
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise ValueError("the two passwords differ; nothing changed")
    return password


def _create_admin(handle: str, name: str) -> None:
    password = _admin_password()
    counsellor, created = _with_session(lambda s: create_admin(s, handle, name, password))
    print(f"admin {counsellor.id} {'created' if created else 'has a new password'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m records", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("upgrade", help="apply the migrations")
    migrate.add_argument("--revision", default="head")
    commands.add_parser("new-key", help="print a new Fernet key")
    commands.add_parser("rotate-keys", help="re-encrypt every secret under the first key")
    purge = commands.add_parser("purge", help="purge closed cases past the retention period")
    purge.add_argument(
        "--older-than-days", type=int, default=int(os.environ.get("XINQIAO_RETENTION_DAYS", "365"))
    )
    export = commands.add_parser("export", help="export a case as JSON")
    export.add_argument("case_id", type=int)
    export.add_argument("-o", "--output", type=Path)
    counsellor = commands.add_parser(
        "add-counsellor", help="add a counsellor (and an on-call shift from now)"
    )
    counsellor.add_argument("handle")
    counsellor.add_argument("--name", required=True)
    counsellor.add_argument("--role", choices=[r.value for r in CounsellorRole], default="volunteer")
    counsellor.add_argument("--on-call-hours", type=float)
    paging_help = "where pages go besides the console: log (default), sms, telegram"
    counsellor.add_argument("--page-channel", default="log", help=paging_help)
    counsellor.add_argument(
        "--page-address", help="a phone number (+86…) or a Telegram chat id; stored encrypted"
    )
    paging = commands.add_parser("set-paging", help="change where a counsellor's pages go")
    paging.add_argument("handle")
    paging.add_argument("--channel", required=True, help=paging_help)
    paging.add_argument("--address", help="a phone number (+86…) or a Telegram chat id; stored encrypted")
    shift = commands.add_parser("add-shift", help="add an on-call shift")
    shift.add_argument("handle")
    shift.add_argument("--hours", type=float, required=True)
    shift.add_argument(
        "--from", dest="starts", type=datetime.fromisoformat, help="with a time zone; default now"
    )
    admin = commands.add_parser("create-admin", help="create an admin, or set an existing admin's password")
    admin.add_argument("handle")
    admin.add_argument("--name", required=True)
    args = parser.parse_args(argv)

    if args.command == "upgrade":
        upgrade(_url(), args.revision)
    elif args.command == "new-key":
        print(new_key())
    elif args.command == "rotate-keys":
        for column, count in _with_session(rotate_all).items():
            print(f"{column}: {count} values re-encrypted")
    elif args.command == "purge":
        purged = _with_session(lambda s: purge_closed(s, older_than=timedelta(days=args.older_than_days)))
        print(f"purged {len(purged)} case(s) closed more than {args.older_than_days} days ago")
    elif args.command == "export":
        document = _with_session(lambda s: export_case(s, args.case_id, actor="command_line"))
        text = json.dumps(document, ensure_ascii=False, indent=2)
        if args.output:
            args.output.write_text(text, encoding="utf-8")
            args.output.chmod(0o600)
        else:
            print(text)
    elif args.command == "add-counsellor":

        async def add(session: AsyncSession) -> None:
            added = await add_counsellor(
                session,
                args.handle,
                args.name,
                CounsellorRole(args.role),
                page_channel=args.page_channel,
                page_address=args.page_address,
            )
            if args.on_call_hours:
                await add_shift(
                    session, args.handle, utcnow(), utcnow() + timedelta(hours=args.on_call_hours)
                )
            print(f"counsellor {added.id} ({args.role}) added")

        _with_session(add)
    elif args.command == "set-paging":
        _with_session(lambda s: set_paging(s, args.handle, args.channel, args.address))
        print(f"pages for {args.handle} go to the console and {args.channel}")
    elif args.command == "add-shift":
        starts = args.starts or utcnow()
        if starts.tzinfo is None:
            parser.error("--from needs a time zone, e.g. 2026-11-27T20:00+08:00")
        _with_session(lambda s: add_shift(s, args.handle, starts, starts + timedelta(hours=args.hours)))
        print(f"shift added for {args.handle}: {starts.isoformat()} + {args.hours} h")
    elif args.command == "create-admin":
        _create_admin(args.handle, args.name)
    return 0


def run(argv: list[str] | None = None) -> int:
    """main(), with a request that does not fit the store (no such case, no such counsellor) reported in
    one line instead of a traceback."""
    try:
        return main(argv)
    except (LookupError, ValueError) as error:
        print(f"python -m records: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
