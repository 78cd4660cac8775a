"""A small threaded TCP proxy on 127.0.0.1 that tests can switch between passing, refusing and black-holing traffic.

Modes:
  * ``pass``: forward bytes both ways.
  * ``refuse``: close every existing connection and reset new ones at once (the upstream looks down).
  * ``blackhole``: close existing connections and accept new ones but never forward or answer (the upstream hangs,
    so clients hit their own timeouts).

Usage::

    with TcpProxy("127.0.0.1", emulator_port) as proxy:
        env["PUBSUB_EMULATOR_HOST"] = proxy.address
        proxy.set_mode("refuse"); ...; proxy.set_mode("pass")

Everything runs in daemon threads; ``close`` stops the listener and every connection.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole"]


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, listen_port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self.port: int = self._listener.getsockname()[1]
        self._mode: Mode = "pass"
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        """Switch behaviour; leaving ``pass`` cuts every open connection."""
        with self._lock:
            self._mode = mode
            conns = list(self._conns) if mode != "pass" else []
        for c in conns:
            _reset(c)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            _reset(c)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            mode = self._mode
            if mode == "refuse":
                _reset(client)
                continue
            self._track(client)
            if mode == "blackhole":
                continue  # held open, never answered, closed on the next mode change or close()
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self._untrack(client)
                _reset(client)
                continue
            self._track(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._closed.is_set() and self._mode == "pass":
                readable, _, _ = select.select([a, b], [], [], 0.2)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                self._untrack(s)
                _reset(s)

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.add(s)

    def _untrack(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.discard(s)


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees a reset rather than a clean end."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
