"""Running an asyncio server (the policy server, the console) in the foreground or on a thread.

A server is any object with ``async run(host, port, ready, stop: asyncio.Event)`` that sets ``self.port`` and
calls ``ready.set()`` once it listens.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

LOOPBACK = ("localhost", "127.0.0.1", "::1")


def forbidden_origin(request, allowed: tuple[str, ...] = ()):
    """A 403 response for a request sent by a web page of another site, else None. Browsers send ``Origin``
    with every websocket; programs (openpi's client, ours) send none and pass. Pages from this machine
    (loopback), from the IP address the request was sent to (the console opened from another machine), or
    from an origin in ``allowed`` pass; a host *name* other than localhost must be allowed by name, which
    keeps a page whose name was re-pointed at this machine (DNS rebinding) out."""
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    origin = request.headers.get("Origin")
    if origin is None or origin in allowed or "*" in allowed:
        return None
    parts = urlsplit(origin)
    if parts.hostname in LOOPBACK or (parts.netloc == request.headers.get("Host") and _is_ip(parts.hostname)):
        return None
    body = (f"websocket from a page at {origin} refused: only pages from this machine may connect "
            "(start the server with --allow-origin ORIGIN to allow another)").encode()
    return Response(403, "Forbidden", Headers({"Content-Type": "text/plain", "Content-Length": str(len(body))}), body)


def run_until_interrupted(server, host: str, port: int, banner: str = "") -> None:
    """Serve in the foreground until Ctrl-C; ``banner`` is printed once the port is open (``{port}``: the
    port bound). An address that cannot be listened on raises ValueError saying why."""
    listening = SimpleNamespace(set=lambda: banner and print(banner.format(port=server.port), flush=True))
    try:
        asyncio.run(server.run(host, port, listening))  # a server calls ready.set() once it listens
    except KeyboardInterrupt:
        pass
    except OSError as e:  # port in use, a host name that does not resolve, an address not on this machine
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None


def _is_ip(host: str | None) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return True


class Background:
    """``with Background(server, host, port, "ws") as url:`` -- the server runs on a thread meanwhile."""

    def __init__(self, server, host: str = "127.0.0.1", port: int = 0, scheme: str = "http", timeout: float = 120.0):
        self.server, self.host, self.port, self.scheme, self.timeout = server, host, port, scheme, timeout
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> str:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()

        def main():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self.server.run(self.host, self.port, self._ready, self._stop))
            except BaseException as e:  # raised again by __enter__
                self._error = e
                self._ready.set()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        t0 = time.time()
        while not self._ready.wait(0.2):
            if time.time() - t0 > self.timeout:
                raise RuntimeError(f"{type(self.server).__name__} did not start within {self.timeout:.0f}s")
        if self._error is not None:
            raise self._error
        return f"{self.scheme}://{self.host}:{self.server.port}"

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
