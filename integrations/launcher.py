"""Starts the three processes of one Xinqiao machine, waits until each answers, and stops them together.

`make run` uses it (`python -m integrations.launcher`), and so do the end-to-end tests and the
benchmarks, so that what is tested is what a user runs:

- engine: Rasa 3.6 in .venv-engine (REST channel and HTTP API with a token, loopback only);
- action server: rasa-sdk in .venv, bound to loopback through SANIC_HOST;
- gateway: the Sanic app in .venv, serving the web chat.

Each process gets its own process group, so Ctrl-C reaches the launcher alone and the launcher stops
the gateway first (no new messages), then the engine, then the action server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from records import crypto
from records.db import with_session
from records.demo import demo_staff
from records.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILE = ROOT / "var" / "secrets.env"
DEMO_ACCOUNTS = ROOT / "var" / "demo-accounts.txt"
# Each secret and how a new one is made. Losing the encryption keys loses every note: a deployment keeps
# them in its secret store, and rotates them with `python -m records rotate-keys`.
SECRET_MAKERS = {
    "XINQIAO_RASA_TOKEN": lambda: secrets.token_hex(32),
    "XINQIAO_SESSION_SECRET": lambda: secrets.token_hex(32),
    crypto.KEYS_VARIABLE: crypto.new_key,
    crypto.LOOKUP_VARIABLE: lambda: secrets.token_hex(32),
}
SECRET_NAMES = tuple(SECRET_MAKERS)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StackFailed(RuntimeError):
    """A process exited or did not become ready; the message carries the end of its log."""


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    engine_port: int = 5005
    actions_port: int = 5055
    database_url: str = f"sqlite+aiosqlite:///{ROOT / 'var' / 'xinqiao.db'}"
    tracker_url: str = f"sqlite:///{ROOT / 'var' / 'tracker.db'}"
    engine_endpoints: Path = ROOT / "bot" / "endpoints.yml"
    models: Path = ROOT / "bot" / "models"
    rasa_token: str = ""
    session_secret: str = ""
    encryption_keys: str = ""
    lookup_key: str = ""
    log_dir: Path | None = None  # None: the processes write to this terminal
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def engine_url(self) -> str:
        return f"http://{self.host}:{self.engine_port}"

    @property
    def actions_url(self) -> str:
        return f"http://{self.host}:{self.actions_port}"

    @classmethod
    def isolated(cls, folder: Path, extra_env: dict[str, str] | None = None) -> StackConfig:
        """A stack of its own for tests and benchmarks: free loopback ports, fresh secrets, and its
        databases and logs in `folder`, so it never disturbs `make run`."""
        return cls(
            gateway_port=free_port(),
            engine_port=free_port(),
            actions_port=free_port(),
            database_url=f"sqlite+aiosqlite:///{folder / 'xinqiao.db'}",
            tracker_url=f"sqlite:///{folder / 'tracker.db'}",
            rasa_token=secrets.token_hex(16),
            session_secret=secrets.token_hex(16),
            encryption_keys=crypto.new_key(),
            lookup_key=secrets.token_hex(16),
            log_dir=folder / "logs",
            extra_env=extra_env or {},
        )

    @classmethod
    def from_environment(cls) -> StackConfig:
        env = os.environ
        config = cls(
            host=env.get("XINQIAO_HOST", "127.0.0.1"),
            gateway_port=int(env.get("XINQIAO_GATEWAY_PORT", "8000")),
            engine_port=int(env.get("XINQIAO_ENGINE_PORT", "5005")),
            actions_port=int(env.get("XINQIAO_ACTIONS_PORT", "5055")),
            rasa_token=env.get("XINQIAO_RASA_TOKEN", ""),
            session_secret=env.get("XINQIAO_SESSION_SECRET", ""),
            encryption_keys=env.get(crypto.KEYS_VARIABLE, ""),
            lookup_key=env.get(crypto.LOOKUP_VARIABLE, ""),
        )
        if "XINQIAO_DATABASE_URL" in env:
            config.database_url = env["XINQIAO_DATABASE_URL"]
        if "XINQIAO_TRACKER_URL" in env:
            config.tracker_url = env["XINQIAO_TRACKER_URL"]
        if "XINQIAO_ENGINE_ENDPOINTS" in env:
            config.engine_endpoints = Path(env["XINQIAO_ENGINE_ENDPOINTS"])
        return config


def local_secrets() -> dict[str, str]:
    """Secrets for a machine that has none in its environment: made once, kept in var/ (mode 0600),
    never committed. A deployment sets every name in SECRET_NAMES itself."""
    values: dict[str, str] = {}
    if SECRETS_FILE.exists():
        for line in SECRETS_FILE.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in SECRET_NAMES and value:
                values[name] = value
    missing = [name for name in SECRET_NAMES if name not in values]
    if missing:
        values.update({name: SECRET_MAKERS[name]() for name in missing})
        SECRETS_FILE.parent.mkdir(parents=True, exist_ok=True)
        SECRETS_FILE.touch(mode=0o600)
        SECRETS_FILE.chmod(0o600)  # touch sets the mode only when it creates the file
        SECRETS_FILE.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


class Stack:
    def __init__(self, config: StackConfig) -> None:
        if not all((config.rasa_token, config.session_secret, config.encryption_keys, config.lookup_key)):
            generated = local_secrets()
            config.rasa_token = config.rasa_token or generated["XINQIAO_RASA_TOKEN"]
            config.session_secret = config.session_secret or generated["XINQIAO_SESSION_SECRET"]
            config.encryption_keys = config.encryption_keys or generated[crypto.KEYS_VARIABLE]
            config.lookup_key = config.lookup_key or generated[crypto.LOOKUP_VARIABLE]
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    def _env(self) -> dict[str, str]:
        c = self.config
        env = dict(os.environ)
        env.update(
            {
                "XINQIAO_DATABASE_URL": c.database_url,
                "XINQIAO_RASA_URL": c.engine_url,
                "XINQIAO_RASA_TOKEN": c.rasa_token,
                "XINQIAO_ACTIONS_URL": c.actions_url,
                "XINQIAO_ACTIONS_WEBHOOK": f"{c.actions_url}/webhook",
                "XINQIAO_SESSION_SECRET": c.session_secret,
                crypto.KEYS_VARIABLE: c.encryption_keys,
                crypto.LOOKUP_VARIABLE: c.lookup_key,
                "XINQIAO_TRACKER_URL": c.tracker_url,
                "SANIC_HOST": c.host,  # rasa-sdk binds to 0.0.0.0 unless told
                "RASA_TELEMETRY_ENABLED": "false",  # no network but the registries here
                "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(c.extra_env)
        return env

    def _commands(self) -> dict[str, list[str]]:
        c = self.config
        return {
            "actions": [
                str(ROOT / ".venv" / "bin" / "python"),
                "-m",
                "rasa_sdk",
                "--actions",
                "actions",
                "--port",
                str(c.actions_port),
            ],
            "engine": [
                str(ROOT / ".venv-engine" / "bin" / "rasa"),
                "run",
                "--enable-api",
                # one argument, so a token that starts with "-" is not read as an option
                f"--auth-token={c.rasa_token}",
                "--interface",
                c.host,
                "--port",
                str(c.engine_port),
                "--endpoints",
                str(c.engine_endpoints),
                "--credentials",
                str(ROOT / "bot" / "credentials.yml"),
                "--model",
                str(c.models),
            ],
            "gateway": [
                str(ROOT / ".venv" / "bin" / "sanic"),
                "integrations.gateway.app:serve",
                "--factory",
                "--host",
                c.host,
                "--port",
                str(c.gateway_port),
                "--single-process",
                "--no-access-logs",
            ],
        }

    def start(self) -> None:
        for name in self._commands():
            self.start_process(name)

    def start_process(self, name: str) -> None:
        """Starts one of the three (again, after a test stopped it); its log is appended to."""
        out: IO[bytes] | None = None
        if self.config.log_dir is not None:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            if name in self._logs:
                self._logs[name].close()
            out = self._logs[name] = open(self.config.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        self.processes[name] = subprocess.Popen(
            self._commands()[name],
            cwd=ROOT,
            env=self._env(),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )

    def _ready_checks(self) -> dict[str, str]:
        c = self.config
        return {
            "actions": f"{c.actions_url}/health",
            "engine": f"{c.engine_url}/status?token={c.rasa_token}",
            "gateway": f"{c.gateway_url}/healthz",
        }

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        pending = dict(self._ready_checks())
        with httpx.Client(timeout=3.0) as http:
            while pending:
                for name, url in list(pending.items()):
                    self._check_alive(name)
                    try:
                        if http.get(url).status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise StackFailed(
                        f"not ready after {timeout:.0f} s: {', '.join(pending)}\n{self.log_tails()}"
                    )
                if pending:
                    time.sleep(0.5)

    def _check_alive(self, name: str) -> None:
        code = self.processes[name].poll()
        if code is not None:
            raise StackFailed(f"{name} exited with {code}\n{self.log_tails()}")

    def first_exited(self) -> str | None:
        return next((name for name, p in self.processes.items() if p.poll() is not None), None)

    def log_tails(self, lines: int = 30) -> str:
        if self.config.log_dir is None:
            return ""
        tails = []
        for name in self.processes:
            path = self.config.log_dir / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(tails)

    def stop(self, grace: float = 15.0) -> None:
        for name in ("gateway", "engine", "actions"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        for log in self._logs.values():
            log.close()


@contextmanager
def running(config: StackConfig, timeout: float = 240.0) -> Iterator[Stack]:
    stack = Stack(config)
    stack.start()
    try:
        stack.wait_ready(timeout)
        yield stack
    finally:
        stack.stop()


def _demo_accounts(config: StackConfig) -> dict[str, str]:
    """Demo staff for a store with no counsellors (records/demo.py); {} once real staff exist."""

    async def made(session: AsyncSession) -> dict[str, str]:
        return await demo_staff(session, DEMO_ACCOUNTS)

    return asyncio.run(with_session(config.database_url, made))


def _sign_in_help(config: StackConfig, demo: dict[str, str]) -> str:
    if not demo:
        return f"  console:        {config.gateway_url}/console\n"
    accounts = "".join(f"      {handle}  {password}\n" for handle, password in demo.items())
    return (
        f"  console:        {config.gateway_url}/console  (demo staff, passwords also in {DEMO_ACCOUNTS}):\n"
        f"{accounts}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m integrations.launcher", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="seconds to wait for all three to answer"
    )
    args = parser.parse_args(argv)
    stack = Stack(StackConfig.from_environment())
    upgrade(stack.config.database_url)  # the gateway and the action server expect the current schema
    demo = _demo_accounts(stack.config)
    print("starting the engine, the action server and the gateway (the engine takes about 20 s)…", flush=True)
    stack.start()
    # Ctrl-C and a service manager's SIGTERM both stop the three cleanly. SIGINT is set explicitly: a
    # process started in the background of a script inherits it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        stack.wait_ready(args.timeout)
        c = stack.config
        print(
            f"\n心桥 is running.\n  web chat:       {c.gateway_url}/\n  health:         {c.gateway_url}/healthz\n"
            f"  engine (Rasa):  {c.engine_url}  (token in var/secrets.env or XINQIAO_RASA_TOKEN)\n"
            f"  action server:  {c.actions_url}\n{_sign_in_help(c, demo)}Press Ctrl-C to stop all three.\n",
            flush=True,
        )
        while (exited := stack.first_exited()) is None:
            time.sleep(1)
        print(f"{exited} stopped unexpectedly; stopping the others.", file=sys.stderr)
        return 1
    except StackFailed as failed:
        print(f"could not start: {failed}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
