"""A fault-injecting HTTP reverse proxy for fake-gcs-server (or any HTTP/1.1 upstream), for fault and chaos tests.

Put it between a client and the emulator (``STORAGE_EMULATOR_HOST=http://127.0.0.1:<proxy port>``) and add rules.
Each request is matched against the rules in order; the first rule that matches and still has budget fires:

  ``FaultRule(action, match="", method="", times=1, probability=1.0)``
    action  ``status:<code>``  answer <code> (e.g. 429, 500, 503) without forwarding
            ``reset``          close the connection with a TCP RST before forwarding (nothing reached upstream)
            ``reset_after``    forward, let upstream apply it, then RST instead of answering (the response is lost)
            ``delay:<secs>``   sleep, then forward (a client with a shorter read timeout sees a timeout)
    match   substring of the request path+query ("" = any); ``method`` e.g. "POST" ("" = any)
    times   how many times it fires (-1 = unlimited); probability: chance to fire when it matches

Control it in-process (``FaultProxy.add`` / ``clear`` / ``stats``) or over HTTP from another process:
  ``POST /__faults__`` with a JSON list of rules; ``DELETE /__faults__`` clears; ``GET /__faults__`` returns stats.
Run standalone: ``python tests/faults/http_proxy.py --upstream http://127.0.0.1:PORT [--port 0]`` (prints the port).
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTROL_PATH = "/__faults__"
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


@dataclasses.dataclass
class FaultRule:
    action: str
    match: str = ""
    method: str = ""
    times: int = 1
    probability: float = 1.0
    fired: int = 0

    def wants(self, method: str, path: str, rng: random.Random) -> bool:
        if self.times != -1 and self.fired >= self.times:
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.match and self.match not in path:
            return False
        return rng.random() < self.probability


class FaultProxy:
    """The proxy server. ``start()`` serves from a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, upstream: str, port: int = 0, seed: int = 0) -> None:
        u = urllib.parse.urlsplit(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 80
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.counts: dict[str, int] = {"requests": 0, "forwarded": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, *rules: FaultRule) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "rules": [dataclasses.asdict(r) for r in self._rules]}

    def _pick(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            self.counts["requests"] += 1
            for r in self._rules:
                if r.wants(method, path, self._rng):
                    r.fired += 1
                    key = r.action.split(":")[0]
                    self.counts[key] = self.counts.get(key, 0) + 1
                    return r
        return None

    # --- request handling ----------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        try:
            self._serve(h)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout fired)
            h.close_connection = True

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if h.path.startswith(CONTROL_PATH):
            self._control(h, body)
            return
        rule = self._pick(h.command, h.path)
        action = rule.action if rule else ""
        if action.startswith("status:"):
            code = int(action.split(":", 1)[1])
            payload = json.dumps({"error": {"code": code, "message": "injected fault"}}).encode()
            self._reply(h, code, {"Content-Type": "application/json"}, payload)
            return
        if action == "reset":
            self._reset(h)
            return
        if action.startswith("delay:"):
            time.sleep(float(action.split(":", 1)[1]))
        try:
            status, headers, data = self._forward(h, body)
        except OSError:
            self._reply(h, 502, {}, b"upstream unreachable")
            return
        with self._lock:
            self.counts["forwarded"] += 1
        if action == "reset_after":
            self._reset(h)
            return
        self._reply(h, status, headers, data)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_HEADERS}
            conn.request(
                h.command, h.path, body=body if body or h.command in ("POST", "PUT", "PATCH") else None, headers=headers
            )
            resp = conn.getresponse()
            data = resp.read()
            out = {
                k: v for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS and k.lower() != "content-length"
            }
            return resp.status, out, data
        finally:
            conn.close()

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        sock: socket.socket = h.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        sock.close()

    def _control(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        if h.command == "POST":
            self.add(*(FaultRule(**r) for r in json.loads(body or b"[]")))
        elif h.command == "DELETE":
            self.clear()
        self._reply(h, 200, {"Content-Type": "application/json"}, json.dumps(self.stats()).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    proxy = FaultProxy(args.upstream, args.port, args.seed)
    print(proxy.port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        proxy._server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
