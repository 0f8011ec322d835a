"""The fault driver: the real gateway, a stand-in engine and a stand-in action server as OS processes,
a SQLite store of record, and the faults (kill, pause, lock, read-only) a test applies to them.

Everything binds to loopback. Every process runs in its own process group and is stopped by its pid
only. Nothing here changes the product: the gateway is started as integrations/launcher.py starts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from integrations.launcher import free_port
from integrations.webchat.sessions import SessionTokens
from records import crypto
from records.migrate import upgrade
from records.models import AuditEntry, Case, Direction, Message

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
SANIC = ROOT / ".venv" / "bin" / "sanic"
STANDIN = Path(__file__).with_name("standin_engine.py")

RED = "药我已经准备好了，今晚就全吃下去"
ORANGE = "我有时候会想，要是我消失了就好了"
CALM = "今天我们班篮球赛赢了"
HANDOFF = "转人工"
NUMBERS = ("12356", "110")

RETRY_LIMIT = 2
RETRY_INTERVAL = 1.0
ENGINE_TIMEOUT = 3.0
BUSY_TIMEOUT = 15.0  # records/db.py: the store's busy timeout, the longest a writer waits for a lock
STALE_AFTER = 60.0  # Switchboard's default stale_after_seconds (the gateway does not set it)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def shows_numbers(text: str) -> bool:
    return all(number in text for number in NUMBERS)


class Proc:
    """One OS process in its own process group, with its output in a log file (one per start)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self._log: Any = None

    def start(self, command: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self._close_log()
        path = self.log_dir / f"{self.name}-{len(self.logs) + 1}.log"
        self.logs.append(path)
        self._log = open(path, "wb")  # noqa: SIM115 - closed in _close_log
        self.process = subprocess.Popen(
            command or self.command,
            cwd=ROOT,
            env=env or self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, sockets are reset."""
        if self.alive():
            self.signal(signal.SIGCONT)  # a stopped process must not stay stopped in a zombie group
            self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)
        self._close_log()

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()  # type: ignore[union-attr]
        self._close_log()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        if not self.logs or not self.logs[-1].exists():
            return ""
        return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Sent:
    """One POST /api/messages and what came of it, for the store checks at the end."""

    label: str
    conversation_id: str
    message_id: str
    text: str
    status: int | None = None  # None: no HTTP answer at all (the gateway died)
    body: dict[str, Any] | None = None
    error: str | None = None

    @property
    def reply_text(self) -> str:
        if self.body is None:
            return ""
        if "replies" in self.body:
            return "\n".join(r.get("text", "") for r in self.body["replies"])
        return str(self.body.get("message", ""))


@dataclass
class Chat:
    """A web chat writer: its own session and its own loopback source address (127.0.0.N), so the web
    chat's per-address limits and flood grouping never mix up two scenarios."""

    stack: Stack
    token: str
    conversation_id: str
    source: str
    sent: list[Sent] = field(default_factory=list)

    def send(
        self,
        text: str,
        message_id: str | None = None,
        label: str = "",
        timeout: float = 45.0,
        via: str | None = None,
    ) -> Sent:
        message_id = message_id or secrets.token_hex(6)
        record = Sent(label, self.conversation_id, message_id, text)
        try:
            with self.stack.http(self.source, timeout, via) as http:
                response = http.post(
                    "/api/messages", json={"session": self.token, "message_id": message_id, "text": text}
                )
            record.status = response.status_code
            record.body = response.json()
        except httpx.HTTPError as error:
            record.error = type(error).__name__
        self.sent.append(record)
        self.stack.ledger.append(record)
        return record

    def later(self) -> list[dict[str, Any]]:
        with self.stack.http(self.source, 10) as http:
            response = http.get(
                "/api/messages", params={"after": 0}, headers={"X-Xinqiao-Session": self.token}
            )
        response.raise_for_status()
        return response.json()["replies"]


class Stack:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db_path = folder / "xinqiao.db"
        self.database_url = f"sqlite+aiosqlite:///{self.db_path}"
        self.readonly_url = f"sqlite+aiosqlite:///file:{self.db_path}?mode=ro&uri=true"
        self.control = folder / "engine-control"
        self.control.mkdir(parents=True, exist_ok=True)
        self.log_dir = folder / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.gateway_port, self.engine_port, self.actions_port = free_port(), free_port(), free_port()
        self.secrets = {
            "XINQIAO_RASA_TOKEN": secrets.token_hex(16),
            "XINQIAO_SESSION_SECRET": secrets.token_hex(16),
            crypto.KEYS_VARIABLE: crypto.new_key(),
            crypto.LOOKUP_VARIABLE: crypto.new_key(),
        }
        self.tokens = SessionTokens(self.secrets["XINQIAO_SESSION_SECRET"], 30 * 24 * 3600)
        self.ledger: list[Sent] = []
        self.session_tokens: list[str] = []
        self._sources = 10
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XINQIAO_", "TELEGRAM", "TWILIO", "WECHAT"))
        }
        base["PYTHONUNBUFFERED"] = "1"
        self.gateway_env = {
            **base,
            **self.secrets,
            "XINQIAO_DATABASE_URL": self.database_url,
            "XINQIAO_RASA_URL": f"http://127.0.0.1:{self.engine_port}",
            "XINQIAO_ACTIONS_URL": f"http://127.0.0.1:{self.actions_port}",
            "XINQIAO_RETRY_INTERVAL_SECONDS": str(RETRY_INTERVAL),
            "XINQIAO_RETRY_LIMIT": str(RETRY_LIMIT),
            "XINQIAO_ENGINE_TIMEOUT_SECONDS": str(ENGINE_TIMEOUT),
            "XINQIAO_PROBE_INTERVAL_SECONDS": "1",
            "XINQIAO_HOST": "127.0.0.1",
        }
        standin_env = {**base, "STANDIN_TOKEN": self.secrets["XINQIAO_RASA_TOKEN"]}
        self.gateway = Proc("gateway", self._gateway_command(), self.gateway_env, self.log_dir)
        self.engine = Proc(
            "engine",
            [
                str(PYTHON),
                str(STANDIN),
                "--role",
                "engine",
                "--port",
                str(self.engine_port),
                "--control",
                str(self.control),
            ],
            standin_env,
            self.log_dir,
        )
        self.actions = Proc(
            "actions",
            [
                str(PYTHON),
                str(STANDIN),
                "--role",
                "actions",
                "--port",
                str(self.actions_port),
                "--control",
                str(folder / "actions-control"),
            ],
            standin_env,
            self.log_dir,
        )
        self.second_port = free_port()
        self.second = Proc(
            "gateway-second",
            self._gateway_command(self.second_port),
            self.gateway_env,
            self.log_dir,
        )
        self.store = create_engine(f"sqlite:///{self.db_path}", connect_args={"timeout": 30})

    # --- processes -------------------------------------------------------------------------------

    def _gateway_command(self, port: int | None = None) -> list[str]:
        """As integrations/launcher.py starts the gateway."""
        return [
            str(SANIC),
            "integrations.gateway.app:serve",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port or self.gateway_port),
            "--single-process",
            "--no-access-logs",
        ]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def http(self, source: str = "127.0.0.1", timeout: float = 10.0, via: str | None = None) -> httpx.Client:
        """A client from a loopback source address, to the gateway (or to the one at `via`)."""
        return httpx.Client(
            base_url=via or self.gateway_url,
            timeout=timeout,
            transport=httpx.HTTPTransport(local_address=source),
        )

    def start(self) -> None:
        upgrade(self.database_url)
        self.start_engine()
        self.actions.start()
        self._wait_http(f"http://127.0.0.1:{self.actions_port}/health", self.actions)
        self.start_gateway()

    def start_engine(self) -> None:
        self.engine.start()
        self._wait_http(
            f"http://127.0.0.1:{self.engine_port}/status?token={self.secrets['XINQIAO_RASA_TOKEN']}",
            self.engine,
        )

    def start_gateway(self, database_url: str | None = None) -> None:
        env = dict(self.gateway_env)
        if database_url is not None:
            env["XINQIAO_DATABASE_URL"] = database_url
        self.gateway.start(env=env)
        # /api/hotlines needs neither the store nor the engine: it answers as soon as Sanic serves.
        self._wait_http(f"{self.gateway_url}/api/hotlines", self.gateway, timeout=60)

    @property
    def second_url(self) -> str:
        return f"http://127.0.0.1:{self.second_port}"

    def start_second_gateway(self, database_url: str) -> None:
        """Another gateway process on the same store (README: several gateways), on its own port."""
        self.second.start(env={**self.gateway_env, "XINQIAO_DATABASE_URL": database_url})
        self._wait_http(f"{self.second_url}/api/hotlines", self.second, timeout=60)

    def _wait_http(self, url: str, proc: Proc, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited\n{proc.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{proc.name} not ready after {timeout:.0f} s\n{proc.tail()}")
            time.sleep(0.1)

    def close(self) -> None:
        self.release_engine()
        for proc in (self.gateway, self.second, self.engine, self.actions):
            with contextlib.suppress(Exception):
                proc.stop(grace=10)
        self.store.dispose()

    # --- the web chat --------------------------------------------------------------------------------

    def chat(self) -> Chat:
        self._sources += 1
        source = f"127.0.0.{self._sources}"
        with self.http(source) as http:
            response = http.post("/api/sessions", json={})
        assert response.status_code == 201, response.text
        token = response.json()["session"]
        self.session_tokens.append(token)
        conversation_id = self.tokens.conversation_of(token)
        assert conversation_id
        return Chat(self, token, conversation_id, source)

    # --- the engine ----------------------------------------------------------------------------------

    def hold_engine(self, conversation_id: str | None = None) -> None:
        """Every message from now on stays inside the engine (or only this conversation's)."""
        (self.control / (f"hold-{conversation_id}" if conversation_id else "hold")).touch()

    def release_engine(self, conversation_id: str | None = None) -> None:
        """Lets the held messages out (only this conversation's; or all of them)."""
        names = (
            [f"hold-{conversation_id}"]
            if conversation_id
            else ["hold", *(p.name for p in self.control.glob("hold-*"))]
        )
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self.control / name).unlink()

    def seen(self) -> list[dict[str, Any]]:
        path = self.control / "seen.jsonl"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):  # a line cut short by SIGKILL
                entries.append(json.loads(line))
        return entries

    def sightings(self, conversation_id: str) -> int:
        """How often the engine was handed this conversation's messages (webhook turns and triggers)."""
        return sum(
            1
            for e in self.seen()
            if e.get("sender") == conversation_id
            and e.get("phase") == "in"
            and e.get("kind") in ("send", "trigger")
        )

    def sightings_by_conversation(self) -> Counter[str]:
        return Counter(
            e["sender"]
            for e in self.seen()
            if e.get("phase") == "in" and e.get("kind") in ("send", "trigger")
        )

    def wait_in_engine(self, conversation_id: str, count: int = 1, timeout: float = 10.0) -> None:
        wait_for(lambda: self.sightings(conversation_id) >= count, timeout, "the message inside the engine")

    # --- the store -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked_store(self) -> Iterator[sqlite3.Connection]:
        """A separate connection holding the store's write lock (BEGIN EXCLUSIVE) until the block ends."""
        connection = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            yield connection
        finally:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            connection.close()

    def lock_store_for(self, seconds: float) -> threading.Thread:
        """Holds the write lock for `seconds` from now, in a thread; returns once the lock is held."""
        taken = threading.Event()

        def hold() -> None:
            with self.locked_store():
                taken.set()
                time.sleep(seconds)

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        assert taken.wait(30), "could not take the store's lock"
        return thread

    def _store_files(self) -> list[Path]:
        # Not the -shm file: it is mmapped, and an immutable mmapped page kills the writer with SIGBUS,
        # which is a crash, not a read-only store.
        return [p for p in (self.db_path, self.db_path.with_name(self.db_path.name + "-wal")) if p.exists()]

    @contextlib.contextmanager
    def readonly_store(self) -> Iterator[None]:
        """The store's files made immutable (chattr +i): every write through an open connection fails
        with a disk I/O error, reads still work, as on a disk remounted read-only."""
        files = self._store_files()
        subprocess.run(["chattr", "+i", *map(str, files)], check=True, capture_output=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *map(str, files)], check=False, capture_output=True)

    def chattr_works(self) -> bool:
        probe = self.folder / "chattr-probe"
        probe.write_text("x")
        try:
            done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False)
            if done.returncode != 0:
                return False
            try:
                probe.write_text("y")
                return False
            except OSError:
                return True
        except FileNotFoundError:
            return False
        finally:
            subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
            probe.unlink(missing_ok=True)

    def read(self) -> Session:
        return Session(self.store)

    def inbound(self, conversation_id: str) -> list[Message]:
        with self.read() as s:
            return list(
                s.scalars(
                    select(Message)
                    .where(Message.conversation_id == conversation_id, Message.direction == Direction.INBOUND)
                    .order_by(Message.id)
                )
            )

    def replies(self, message_id: int) -> list[Message]:
        with self.read() as s:
            return list(
                s.scalars(select(Message).where(Message.reply_to_id == message_id).order_by(Message.id))
            )

    def cases(self, conversation_id: str) -> list[Case]:
        with self.read() as s:
            return list(s.scalars(select(Case).where(Case.conversation_id == conversation_id)))

    def audit(self, conversation_id: str, action: str | None = None) -> list[AuditEntry]:
        with self.read() as s:
            query = select(AuditEntry).where(AuditEntry.subject == conversation_id)
            if action:
                query = query.where(AuditEntry.action == action)
            return list(s.scalars(query.order_by(AuditEntry.id)))

    def status_of(self, conversation_id: str, text: str) -> str | None:
        rows = [m for m in self.inbound(conversation_id) if m.text == text]
        return rows[0].status if rows else None

    def wait_status(self, conversation_id: str, text: str, statuses: tuple[str, ...], timeout: float) -> str:
        return wait_for(
            lambda: (s := self.status_of(conversation_id, text)) in statuses and s,
            timeout,
            f"message status in {statuses} (now {self.status_of(conversation_id, text)})",
            every=0.2,
        )

    def all_logs(self) -> list[Path]:
        return [p for proc in (self.gateway, self.second) for p in proc.logs if p.exists()]


def engine_replies(replies: list[Message]) -> list[Message]:
    """The stored replies that came from one of the engine's answers (the stand-in marks them)."""
    return [r for r in replies if r.text.startswith("[standin]")]


def print_matrix(rows: list[tuple[str, str, str]]) -> None:
    for row in rows:
        print(" | ".join(row), file=sys.stderr)
