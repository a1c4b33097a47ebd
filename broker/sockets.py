"""Socket construction with the reliability rules applied in one place.

Every socket gets finite high-water marks (a stuck peer costs bounded memory, never a hang), a short
linger (closing never blocks the process's exit for long) and, on ROUTERs, ROUTER_MANDATORY (a send to
a peer that is gone raises instead of vanishing silently).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import zmq

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
    if kind in (zmq.DEALER, zmq.SUB, zmq.PUSH, zmq.PUB):
        # Reconnect quickly after a peer restarts, but back off if it stays away.
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    return sock


@contextlib.contextmanager
def closing_context(ctx: zmq.Context | None = None) -> Iterator[zmq.Context]:
    """A context whose sockets are all closed (with linger) before it terminates."""
    ctx = ctx or zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=LINGER_MS)
