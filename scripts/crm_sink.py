#!/usr/bin/env python3
"""The dev stack's stand-in CRM for outbound events.

Receives the adapter's identity events (POST, Standard Webhooks signed),
checks the signature, appends each event as one JSON line to FILE and prints

    crm <type> <short data>

Answers 204, or 401 when the signature is missing, wrong or stale.

Usage:
    python scripts/crm_sink.py --port 8025 --file .data/dev/crm-events.jsonl --secret whsec_... [--pid-file FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 5 * 1024 * 1024
SHORT_DATA_KEYS = ("email", "user_id", "contact_id", "lead_id", "account_id", "change", "enabled", "reason", "via", "batch_id")


def short_data(data: object) -> str:
    """A few telling fields of an event's data, for one log line."""
    if not isinstance(data, dict):
        return json.dumps(data)[:120]
    picked = {key: data[key] for key in SHORT_DATA_KEYS if key in data}
    text = " ".join(f"{key}={value}" for key, value in picked.items()) or json.dumps(data)
    return text[:160]


class CrmSink:
    """Verifies and records events; one instance per server."""

    def __init__(self, events_file: Path, secret: str) -> None:
        self.events_file = events_file
        self.webhook = Webhook(secret)
        self._lock = threading.Lock()

    def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        try:
            event = self.webhook.verify(body, headers)
        except WebhookVerificationError as error:
            return 401, f"bad signature: {error}"
        except ValueError as error:
            return 400, f"not JSON: {error}"
        record = {"webhook_id": headers.get("webhook-id"), **(event if isinstance(event, dict) else {"body": event})}
        with self._lock, self.events_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
        event_type = event.get("type", "?") if isinstance(event, dict) else "?"
        data = event.get("data") if isinstance(event, dict) else event
        print(f"crm {event_type} {short_data(data)}", flush=True)
        return 204, ""


def make_handler(sink: CrmSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "keybridge-crm-sink"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(413, "body too large")
                return
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, message = sink.receive(body, headers)
            if status != 204:
                print(f"crm refused: {status} {message}", flush=True)
            self._answer(status, message)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200, "keybridge CRM sink: POST signed events here\n")

        def _answer(self, status: int, message: str) -> None:
            payload = message.encode("utf-8")
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        def log_message(self, format: str, *args) -> None:  # the one line per event is enough
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-in CRM: verify and record the adapter's outbound events.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--file", required=True, help="JSON-lines file the events are appended to")
    parser.add_argument("--secret", default=os.environ.get("KEYBRIDGE_CRM_EVENTS_SECRET"),
                        help="whsec_... secret (default: $KEYBRIDGE_CRM_EVENTS_SECRET)")
    parser.add_argument("--pid-file", help="write this process's pid here while it runs")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give --secret whsec_... or set KEYBRIDGE_CRM_EVENTS_SECRET")

    events_file = Path(args.file)
    events_file.parent.mkdir(parents=True, exist_ok=True)
    sink = CrmSink(events_file, args.secret)
    try:
        server = ThreadingHTTPServer((args.host, args.port), make_handler(sink))
    except OSError as error:
        print(f"crm_sink: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    if args.pid_file:
        Path(args.pid_file).write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"crm_sink: listening on http://{args.host}:{args.port}/, appending to {events_file}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if args.pid_file:
            Path(args.pid_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
