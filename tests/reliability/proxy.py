"""A fault-injecting TCP proxy in front of the S3 server, for the reliability tests.

Clients talk to the proxy's port; it forwards bytes both ways to the real server, so the S3
objects live on behind it whatever the proxy does. It watches the request lines going to the
server (``PUT /bucket/state/CURRENT HTTP/1.1``) and can

* ``hold`` the first request whose line matches a pattern: the request never reaches the
  server, and the test learns (``held.wait()``) that the client has reached exactly that point,
  so it can kill the client there, deterministically;
* go ``down`` for some seconds, now or when a request line matches: every open connection is
  cut and every new one is reset at once, as when the server process has stopped; the
  connection attempts made meanwhile are counted, which shows the client's retries.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class _Trigger:
    pattern: re.Pattern[bytes]
    event: threading.Event = field(default_factory=threading.Event)
    line: str = ""


_REQUEST_LINE = re.compile(rb"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/1\.[01]\r\n")


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.requests: list[str] = []
        self.refused = 0
        self._hold: _Trigger | None = None
        self._down_trigger: tuple[_Trigger, float] | None = None
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # -- what the tests use ------------------------------------------------------------------

    def hold(self, pattern: str) -> threading.Event:
        """Hold back the first request whose line (``PUT /b/k``) matches; the event is set then."""
        self._hold = _Trigger(re.compile(pattern.encode()))
        return self._hold.event

    @property
    def held_line(self) -> str:
        return self._hold.line if self._hold else ""

    def down_when(self, pattern: str, seconds: float) -> threading.Event:
        """Go down for ``seconds`` when a request line matches (that request is lost)."""
        trigger = _Trigger(re.compile(pattern.encode()))
        self._down_trigger = (trigger, seconds)
        return trigger.event

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._cut_all()

    # -- the proxy itself ------------------------------------------------------------------

    def _go_down(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _reset(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open |= {client, server}
            threading.Thread(target=self._to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket) -> None:
        tail = b""
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            window = tail + data
            tail = window[-300:]
            for match in _REQUEST_LINE.finditer(window):
                line = f"{match[1].decode()} {match[2].decode()}"
                self.requests.append(line)
                hold = self._hold
                if hold and not hold.event.is_set() and hold.pattern.search(line.encode()):
                    hold.line = line
                    hold.event.set()
                    self._wait_for_close(client)  # the request never reaches the server
                    _reset(server)
                    return
                if self._down_trigger and self._down_trigger[0].pattern.search(line.encode()):
                    trigger, seconds = self._down_trigger
                    self._down_trigger = None
                    trigger.line = line
                    self._go_down(seconds)
                    trigger.event.set()
                    return
            try:
                server.sendall(data)
            except OSError:
                break
        _reset(server)
        _reset(client)

    @staticmethod
    def _wait_for_close(client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        """Bytes one way until ``source`` closes. An orderly close is passed on as one, so that the
        other side still reads what was sent (moto closes the connection after a ranged GET, and
        a reset reaching the client before it has read the body would drop the body); a broken
        connection is answered with resets, as a dead server's host would."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            try:
                target.sendall(data)
            except OSError:
                break
        _reset(source)
        _reset(target)


def _reset(sock: socket.socket) -> None:
    """Close at once with a TCP reset, as a dead server's host would answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
    sock.close()
