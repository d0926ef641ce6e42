"""The live stream of a pool of workers: the other workers' exchanges, relayed to worker 0,
whose admin API serves the one `/admin/stream`.

Only while someone watches: worker 0 writes the address of its relay socket to the store
(setting `stream`, see `mockstore.changes`) when its first subscriber arrives, and clears it
when the last one leaves; the other workers read it within a second and send each exchange as
one UDP datagram on loopback, never waiting (a datagram that cannot go is dropped, as the
stream drops what a slow subscriber cannot take).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

from .stream import EXCHANGE_FIELDS

log = logging.getLogger("mockstore.admin")

MAX_DATAGRAM = 60_000


class RelayServer:
    """Worker 0's end: a loopback UDP socket on the event loop; each datagram is an event."""

    def __init__(self, publish):
        self.publish = publish
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = "%s:%d" % self.sock.getsockname()[:2]
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        for _ in range(256):  # what is there now; the loop comes back for the rest
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.publish(event)
            elif isinstance(event, list) and len(event) == len(EXCHANGE_FIELDS):
                self.publish(tuple(event))

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class RelayClient:
    """Another worker's end."""

    def __init__(self, address: str):
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def send(self, event) -> None:
        data = json.dumps(event, default=str).encode()
        if len(data) > MAX_DATAGRAM:
            return
        try:
            self.sock.sendto(data, self.address)
        except OSError:
            pass  # worker 0 gone or its buffer full: the event is lost, the proxy goes on

    def close(self) -> None:
        self.sock.close()
