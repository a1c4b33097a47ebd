"""A worker's link to the broker: one IO thread that owns the DEALER socket.

The compute loop (a T3 or S3Gen step can hold the CPU or GPU for a second) must not decide whether
the worker looks alive, so this thread registers, heartbeats both ways, notices a silent or restarted
broker and reconnects, and passes jobs and cancels to the compute loop through an inproc socket.
Torch releases the GIL in its kernels, so the thread keeps time while the model runs.

However the compute loop ends (a crash, or a signal), the link's last message is a Goodbye saying why,
so the broker acts on the slot's jobs at once instead of waiting out the heartbeat expiry — as vLLM's
engine core announces its own death before it exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator

import zmq

from broker.dispatch import Dispatcher
from broker.protocol import Cancel, Codec, Goodbye, Heartbeat, Job, ProtocolError, Ready, Register
from broker.settings import BrokerSettings
from broker.sockets import make_socket

log = logging.getLogger(__name__)
RECENT_CANCELS = 1024
GOODBYE_LINGER_MS = 1000  # the closing DEALER's time to deliver the Goodbye (and what preceded it)


class BrokerLink:
    """Created and used by the compute thread; `start()` runs the IO thread.

    The compute thread reads jobs and cancels from `inbound` (a PULL socket it may poll with its own
    sockets) and sends to the broker with `send()`. `generation` grows whenever the worker registers
    afresh; work begun under an older generation belongs to a broker that no longer tracks it.
    Run the compute loop inside `running()`, which starts the thread and says Goodbye at the end.
    """

    def __init__(self, ctx: zmq.Context, broker: BrokerSettings, ready: Ready) -> None:
        self.ctx = ctx
        self.broker = broker
        self.ready = ready
        self.generation = 0
        self.epoch = ""
        self._cancelled: deque[str] = deque(maxlen=RECENT_CANCELS)
        self._cancelled_at: dict[str, float] = {}  # job → monotonic time its cancel arrived
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._goodbye: Goodbye | None = None  # set by stop() before _stop; read by the IO thread after it
        tag = f"{os.getpid()}-{id(self)}"
        self._in_addr, self._out_addr = f"inproc://link-in-{tag}", f"inproc://link-out-{tag}"
        self.inbound = make_socket(ctx, zmq.PULL)
        self.inbound.bind(self._in_addr)
        self._outbound = make_socket(ctx, zmq.PUSH)
        self._outbound.bind(self._out_addr)
        self._codec = Codec()
        self._from_broker = Dispatcher(
            f"{ready.role} link",
            {Heartbeat: self._heartbeat, Register: self._register, Cancel: self._cancel, Job: self._job},
        )
        self._thread = threading.Thread(target=self._run, name=f"broker-link-{ready.role}", daemon=True)

    # -- compute-thread API -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The IO thread around the compute loop: an exception escaping the loop becomes the reason the
        Goodbye gives (and is re-raised, so the process exits non-zero)."""
        self.start()
        reason = "stopped"
        try:
            yield
        except BaseException as exc:
            reason = f"the {self.ready.role} loop crashed: {exc!r}"
            raise
        finally:
            self.stop(reason)

    def stop(self, reason: str) -> None:
        """End the IO thread; what the compute loop sent still goes out, then a Goodbye with `reason`."""
        self._goodbye = Goodbye(reason=reason)
        self._stop.set()
        with contextlib.suppress(zmq.Again):  # Again: the IO thread is gone or stuck; nothing to wake
            self._outbound.send(b"", zmq.NOBLOCK)  # an empty frame wakes it now, not at its next heartbeat
        self._thread.join(timeout=2)
        self.inbound.close()
        self._outbound.close()

    def send(self, msg: object, *bulk: bytes) -> None:
        self._outbound.send_multipart(self._codec.encode(msg, *bulk))

    def receive(self) -> tuple[object, list]:
        frames = self.inbound.recv_multipart(copy=False)
        return self._codec.decode([f.buffer for f in frames])

    def is_cancelled(self, job: str) -> bool:
        return job in self._cancelled_at

    def cancelled_at(self, job: str) -> float | None:
        return self._cancelled_at.get(job)

    # -- IO thread ----------------------------------------------------------------------------------

    def _mark_cancelled(self, job: str) -> None:
        with self._lock:
            if len(self._cancelled) == self._cancelled.maxlen:
                self._cancelled_at.pop(self._cancelled[0], None)
            self._cancelled.append(job)
            self._cancelled_at[job] = time.monotonic()

    def _connect(self, attempt: int) -> zmq.Socket:
        identity = f"{self.ready.slot}/{self.ready.role}/{self.ready.pid}/{attempt}".encode()
        dealer = make_socket(self.ctx, zmq.DEALER, identity=identity)
        dealer.connect(self.broker.connect(self.broker.backend_port))
        dealer.send(self._codec.encode(self.ready)[0])
        return dealer

    def _run(self) -> None:
        codec = Codec()
        to_compute = make_socket(self.ctx, zmq.PUSH)
        to_compute.connect(self._in_addr)
        from_compute = make_socket(self.ctx, zmq.PULL)
        from_compute.connect(self._out_addr)
        attempt = 0
        dealer = self._connect(attempt)
        interval = self.broker.heartbeat_interval
        broker_seen = next_beat = time.monotonic()
        beat = codec.encode(Heartbeat())[0]
        linger = 0
        try:
            while True:
                poller = zmq.Poller()
                poller.register(dealer, zmq.POLLIN)
                poller.register(from_compute, zmq.POLLIN)
                events = dict(poller.poll(max(0.0, next_beat - time.monotonic()) * 1000))
                if self._stop.is_set():
                    break  # no heartbeat after the Goodbye: it must be the broker's last word from us
                now = time.monotonic()
                if from_compute in events:
                    self._forward(from_compute, dealer)
                if dealer in events:
                    broker_seen = now
                    while True:
                        try:
                            frames = dealer.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._on_broker(frames, codec, dealer, to_compute)
                if now >= next_beat:
                    next_beat = now + interval
                    dealer.send(beat, zmq.NOBLOCK)
                if now - broker_seen > self.broker.expiry:
                    log.warning("broker silent for %.1f s; reconnecting", now - broker_seen)
                    dealer.close(linger=0)
                    attempt += 1
                    self._new_generation()
                    dealer = self._connect(attempt)
                    broker_seen = now
            self._forward(from_compute, dealer)  # e.g. a Failed sent just before the loop ended
            if self._goodbye is not None:
                with contextlib.suppress(zmq.Again):
                    dealer.send(codec.encode(self._goodbye)[0], zmq.NOBLOCK)
                    linger = GOODBYE_LINGER_MS
        except zmq.ContextTerminated:
            pass
        finally:
            dealer.close(linger=linger)
            for sock in (to_compute, from_compute):
                sock.close(linger=0)

    @staticmethod
    def _forward(from_compute: zmq.Socket, dealer: zmq.Socket) -> None:
        """Pass on what the compute loop sent, skipping stop()'s empty wake-up frame."""
        while True:
            try:
                frames = from_compute.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames[0]):
                dealer.send_multipart(frames, copy=False)

    def _on_broker(self, frames: list, codec: Codec, dealer: zmq.Socket, to_compute: zmq.Socket) -> None:
        try:
            msg, _ = codec.decode([f.buffer for f in frames])
        except ProtocolError as exc:
            log.warning("dropped a malformed message from the broker: %s", exc)
            return
        self._from_broker(msg, frames, codec, dealer, to_compute)

    def _heartbeat(self, msg: Heartbeat, *_: object) -> None:
        if msg.epoch != self.epoch:
            if self.epoch:
                log.warning("broker restarted (epoch %s → %s)", self.epoch, msg.epoch)
                self._new_generation()
            self.epoch = msg.epoch

    def _register(self, msg: Register, frames: list, codec: Codec, dealer: zmq.Socket, _: zmq.Socket) -> None:
        # The broker lost track of us: whatever we were doing, it no longer expects results for.
        log.warning("broker %s asks us to register again", msg.epoch)
        self.epoch = msg.epoch
        self._new_generation()
        dealer.send(codec.encode(self.ready)[0])

    def _cancel(self, msg: Cancel, frames: list, codec: Codec, dealer: zmq.Socket, to_compute: zmq.Socket) -> None:
        self._mark_cancelled(msg.job)
        to_compute.send_multipart(frames, copy=False)

    def _job(self, msg: Job, frames: list, codec: Codec, dealer: zmq.Socket, to_compute: zmq.Socket) -> None:
        # Bounded by the broker: it dispatches no more than the slot's capacity.
        to_compute.send_multipart(frames, copy=False)

    def _new_generation(self) -> None:
        with self._lock:
            self.generation += 1
