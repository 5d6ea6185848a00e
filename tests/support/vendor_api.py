"""A recording stand-in for a vendor's REST API, for SDKs that do not use `requests`.

hubspot-api-client talks HTTP through urllib3, which `responses` cannot see; this
small server answers the SDK's real HTTP calls with canned bodies (shaped as the
vendor documents them, from tests/fixtures/<vendor>/api/) and keeps every request.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: object


class VendorApi:
    def __init__(self):
        self.routes: dict[tuple[str, str], list[tuple[int, object, dict]]] = {}
        self.requests: list[Recorded] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                parts = urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                api.requests.append(Recorded(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body))
                answers = api.routes.get((self.command, parts.path))
                status, payload, headers = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else (
                    404, {"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"}, {})
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json;charset=utf-8")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, method: str, path: str, status: int = 200, body: object = None, headers: dict | None = None) -> "VendorApi":
        """Answer `method path` with this; several answers for one route are given in turn (the last one repeats)."""
        self.routes.setdefault((method, path), []).append((status, body, headers or {}))
        return self

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
