"""A stand-in for Rasa (and for the action server's /health), small enough to kill and restart at will.

Run as its own process: `python standin_engine.py --role engine --port P --control DIR --token T`.
It speaks what the gateway uses of Rasa:

- `POST /webhooks/rest/webhook` {sender, message, metadata} -> `[{"text": ...}]`
- `POST /conversations/{id}/trigger_intent?token=` {name, entities} -> `{"messages": [{"text": ...}]}`
- `GET /conversations/{id}/tracker?token=` -> `{"active_loop": {}}`
- `POST /conversations/{id}/tracker/events?token=` -> `{}`
- `GET /status?token=` -> `{"model_id": "standin"}`

With `--role actions` it answers `GET /health` only (the gateway's action-server probe).

Control, through files in DIR, so that it works across kills and restarts:

- while `DIR/hold` exists, every message (webhook or trigger) is held after it is recorded, so a test
  knows the exact moment a message is inside the engine, and decides when it comes out; while
  `DIR/hold-<sender>` exists, that conversation's messages are held;
- every request is appended to `DIR/seen.jsonl` as it arrives (`phase: "in"`) and as it is answered
  (`phase: "out"`), with the sender, the text or the intent, this process's pid and a sequence number.

Replies never repeat the writer's words; each carries `#<pid>-<seq>` so a test can tell which of the
engine's answers reached the store.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPLY_PREFIX = "[standin]"
_CONVERSATION = re.compile(r"^/conversations/([^/]+)/(trigger_intent|tracker|tracker/events)$")


class Recorder:
    def __init__(self, control: Path) -> None:
        self.control = control
        self._lock = threading.Lock()
        self._seq = 0

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def write(self, **entry: object) -> None:
        entry = {"pid": os.getpid(), "t": time.time(), **entry}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, open(self.control / "seen.jsonl", "a", encoding="utf-8") as out:
            out.write(line)
            out.flush()

    def hold(self, sender: str) -> None:
        while (self.control / "hold").exists() or (self.control / f"hold-{sender}").exists():
            time.sleep(0.02)


def make_handler(role: str, token: str, recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:  # quiet: the test reads seen.jsonl
            return

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the gateway gave up on this request already
                pass

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            return body if isinstance(body, dict) else {}

        def _authorised(self, query: dict) -> bool:
            return query.get("token", [""])[0] == token

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if role == "actions":
                self._send(200, {"status": "ok"}) if url.path == "/health" else self._send(404, {})
                return
            if url.path == "/status":
                if not self._authorised(query):
                    self._send(401, {"error": "token"})
                    return
                self._send(200, {"model_id": "standin", "num_active_training_jobs": 0})
                return
            match = _CONVERSATION.match(url.path)
            if match and match.group(2) == "tracker":
                if not self._authorised(query):
                    self._send(401, {"error": "token"})
                    return
                recorder.write(kind="tracker", sender=match.group(1), phase="in", seq=recorder.next_seq())
                self._send(200, {"sender_id": match.group(1), "active_loop": {}})
                return
            self._send(404, {})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            body = self._body()
            if role == "actions":
                self._send(404, {})
                return
            if url.path == "/webhooks/rest/webhook":
                seq = recorder.next_seq()
                sender = str(body.get("sender", ""))
                recorder.write(kind="send", sender=sender, text=body.get("message"), phase="in", seq=seq)
                recorder.hold(sender)
                reply = f"{REPLY_PREFIX} 我在听，你愿意多说一点吗？ #{os.getpid()}-{seq}"
                recorder.write(kind="send", sender=sender, phase="out", seq=seq)
                self._send(200, [{"recipient_id": sender, "text": reply}])
                return
            match = _CONVERSATION.match(url.path)
            if match is None:
                self._send(404, {})
                return
            if not self._authorised(query):
                self._send(401, {"error": "token"})
                return
            sender, what = match.groups()
            if what == "tracker/events":
                recorder.write(kind="events", sender=sender, phase="in", seq=recorder.next_seq())
                self._send(200, {"sender_id": sender})
                return
            if what == "trigger_intent":
                seq = recorder.next_seq()
                recorder.write(
                    kind="trigger",
                    sender=sender,
                    intent=body.get("name"),
                    entities=body.get("entities"),
                    phase="in",
                    seq=seq,
                )
                recorder.hold(sender)
                reply = f"{REPLY_PREFIX} 我在这里陪着你。 #{os.getpid()}-{seq}"
                recorder.write(kind="trigger", sender=sender, phase="out", seq=seq)
                self._send(200, {"tracker": {"sender_id": sender}, "messages": [{"text": reply}]})
                return
            self._send(404, {})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("engine", "actions"), default="engine")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--token", default=os.environ.get("STANDIN_TOKEN", ""))
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    args.control.mkdir(parents=True, exist_ok=True)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler(args.role, args.token, Recorder(args.control))
    )
    print(f"standin {args.role} listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
