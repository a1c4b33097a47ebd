"""The broker process: frontend ROUTER (clients), backend ROUTER (workers), results XSUB → XPUB.

One poll loop reads all four sockets, hands events to the Scheduler, and forwards results. It is not a
blind zmq.proxy: it reads each result's header on the way through, which is how it learns that a job
sent audio (no re-dispatch after that), finished, or failed, and how it drops results of jobs that
already ended — so each client sees exactly one end per job.
"""

from __future__ import annotations

import logging
import time
import uuid

import msgspec
import zmq

from broker.dispatch import Dispatcher
from broker.protocol import (
    Audio,
    Cancel,
    Codec,
    Done,
    Error,
    ErrorCode,
    Ping,
    Pong,
    ProtocolError,
    StatsRequest,
    Submit,
)
from broker.scheduler import Scheduler
from broker.settings import BrokerSettings
from broker.sockets import make_socket

log = logging.getLogger(__name__)


class Broker:
    def __init__(self, settings: BrokerSettings, ctx: zmq.Context) -> None:
        self.settings = settings
        self.codec = Codec()
        self.epoch = uuid.uuid4().hex[:12]
        self.frontend = make_socket(ctx, zmq.ROUTER)
        self.backend = make_socket(ctx, zmq.ROUTER)
        self.results_in = make_socket(ctx, zmq.XSUB)
        self.results_out = make_socket(ctx, zmq.XPUB)
        self.frontend.bind(settings.bind(settings.frontend_port))
        self.backend.bind(settings.bind(settings.backend_port))
        self.results_in.bind(settings.bind(settings.results_in_port))
        self.results_out.bind(settings.bind(settings.results_out_port))
        # The broker reads every result (it tracks job state), so it subscribes upstream to everything
        # and filters per client at the XPUB.
        self.results_in.send(b"\x01")
        self.scheduler = Scheduler(settings, self, self.epoch)
        self._from_client = Dispatcher(
            "broker frontend", {Submit: self._submit, Cancel: self._cancel, Ping: self._ping, StatsRequest: self._stats}
        )
        self.running = True

    # -- Outbox -------------------------------------------------------------------------------------

    def to_worker(self, identity: bytes, msg: object, *bulk: bytes) -> bool:
        try:
            self.backend.send_multipart([identity, *self.codec.encode(msg, *bulk)], flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone, ROUTER_MANDATORY) or EAGAIN (stuck)
            log.warning("worker %r unreachable: %s", identity, exc)
            return False

    def to_client(self, topic: str, msg: object) -> None:
        try:
            self.results_out.send_multipart([topic.encode(), *self.codec.encode(msg)], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("results to %s dropped: subscriber over its high-water mark", topic)

    # -- loop ---------------------------------------------------------------------------------------

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in (self.frontend, self.backend, self.results_in, self.results_out):
            poller.register(sock, zmq.POLLIN)
        interval = self.settings.heartbeat_interval
        next_beat = time.monotonic()
        log.info("broker %s up: %s", self.epoch, self.settings)
        while self.running:
            timeout_ms = max(0.0, next_beat - time.monotonic()) * 1000
            events = dict(poller.poll(timeout_ms))
            now = time.monotonic()
            if self.backend in events:
                self._drain(self.backend, self._on_backend)
            if self.results_in in events:
                self._drain(self.results_in, self._on_result)
            if self.results_out in events:
                self._drain(self.results_out, self._on_subscription)
            if self.frontend in events:
                self._drain(self.frontend, self._on_frontend)
            beat = now >= next_beat
            if beat:
                next_beat = now + interval
            self.scheduler.tick(time.monotonic(), heartbeat=beat)

    def _drain(self, sock: zmq.Socket, handle, limit: int = 1000) -> None:
        """Read what is waiting, but a bounded amount, so no socket starves the others."""
        for _ in range(limit):
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                handle(frames)
            except ProtocolError as exc:
                log.warning("dropped a malformed message: %s", exc)

    def _on_backend(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        msg, _ = self.codec.decode([f.buffer for f in frames[1:]])
        self.scheduler.from_worker(identity, msg, time.monotonic())

    def _on_result(self, frames: list[zmq.Frame]) -> None:
        msg, _ = self.codec.decode([f.buffer for f in frames[1:2]])
        if not isinstance(msg, Audio | Done | Error):
            raise ProtocolError(f"{type(msg).__name__} on the results channel")
        if self.scheduler.result(msg, time.monotonic()):
            try:
                self.results_out.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                log.warning("result for %s dropped: subscriber over its high-water mark", msg.job)

    def _on_subscription(self, frames: list[zmq.Frame]) -> None:
        data = frames[0].bytes
        if not data:
            return
        topic = data[1:].decode(errors="replace")
        if data[0] == 1:
            self.scheduler.subscribed.add(topic)
        elif data[0] == 0:
            self.scheduler.client_gone(topic)

    def _on_frontend(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        msg, bulk = self.codec.decode([f.buffer for f in frames[1:]])
        self._from_client(msg, identity, bulk)

    def _submit(self, msg: Submit, identity: bytes, bulk: list) -> None:
        if msg.client not in self.scheduler.subscribed:
            # Its results would go nowhere: a client's SUB reconnects on its own after a broker
            # restart, possibly after its DEALER. Answer on the frontend, where it can hear us.
            message = "the broker has not seen this client's results subscription yet"
            self._reply(identity, Error(job=msg.job, code=ErrorCode.UNSUBSCRIBED, message=message))
            return
        reference = bytes(bulk[0]) if msg.has_reference and bulk else None
        self.scheduler.submit(msg, reference, time.monotonic())

    def _cancel(self, msg: Cancel, identity: bytes, bulk: list) -> None:
        self.scheduler.cancel(msg.job)

    def _ping(self, msg: Ping, identity: bytes, bulk: list) -> None:
        self._reply(identity, Pong(epoch=self.epoch, subscribed=msg.client in self.scheduler.subscribed))

    def _stats(self, msg: StatsRequest, identity: bytes, bulk: list) -> None:
        stats = self.scheduler.stats()
        unexpected = stats.unexpected_messages + self._from_client.unknown
        self._reply(identity, msgspec.structs.replace(stats, unexpected_messages=unexpected))

    def _reply(self, identity: bytes, msg: object) -> None:
        try:
            self.frontend.send_multipart([identity, *self.codec.encode(msg)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("client %r unreachable: %s", identity, exc)
