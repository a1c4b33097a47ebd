"""Socket construction with the reliability rules applied in one place.

Every socket gets finite high-water marks (a stuck peer costs bounded memory, never a hang), a short
linger (closing never blocks the process's exit for long) and, on ROUTERs, ROUTER_MANDATORY (a send to
a peer that is gone raises instead of vanishing silently).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import zmq

log = logging.getLogger(__name__)

HWM = 10_000  # messages; an audio chunk is one message
LINGER_MS = 200


def make_socket(ctx: zmq.Context, kind: int, *, identity: bytes | None = None, hwm: int = HWM) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if kind in (zmq.DEALER, zmq.SUB, zmq.PUSH, zmq.PUB, zmq.XPUB):
        # Reconnect quickly after a peer restarts, but back off if it stays away.
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    return sock


def await_subscriber(sock: zmq.Socket, stop: threading.Event, address: str, warn_after: float = 5.0) -> bool:
    """Wait until a connecting XPUB has its peer's subscription; False if `stop` came first. From then
    on what it publishes reaches the peer.

    A publisher drops what it sends until the subscriber's subscription arrives, a little after the
    connection, and the connection retries on its own schedule: a worker's DEALER can be back with the
    broker and given a job while its results socket still waits, and that job's audio would be lost.
    """
    started = time.monotonic()
    warned = False
    while not stop.is_set():
        if sock.poll(100):
            sock.recv()
            return True
        if not warned and time.monotonic() - started > warn_after:
            log.warning("nobody has subscribed at %s after %.0f s; still waiting", address, warn_after)
            warned = True
    return False


@contextlib.contextmanager
def closing_context(ctx: zmq.Context | None = None) -> Iterator[zmq.Context]:
    """A context whose sockets are all closed (with linger) before it terminates."""
    ctx = ctx or zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=LINGER_MS)
