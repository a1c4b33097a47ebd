"""Scripted workers: real sockets speaking the protocol, driven by the test instead of a model."""

from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np
import zmq

from broker.protocol import (
    PROTOCOL_VERSION,
    Audio,
    Codec,
    Done,
    Goodbye,
    Heartbeat,
    Job,
    Ready,
    Register,
    Span,
)
from broker.settings import BrokerSettings
from broker.sockets import await_subscriber, make_socket
from engine.metrics import Metrics


class ScriptedSlot:
    """A slot's two workers as one object: both heartbeat from a thread until `silence()`d.

    Messages the broker sends to the T3 side (jobs, cancels) land in `inbox`.
    """

    def __init__(self, settings: BrokerSettings, name: str, capacity: int = 1, auto_chunks: int = 0) -> None:
        """With `auto_chunks`, each job is answered at once with that many 0.1 s chunks and `done`,
        unless its text contains "hold" (then the test drives it)."""
        self.settings = settings
        self.auto_chunks = auto_chunks
        self.answered: list[Job] = []  # jobs answered automatically
        self.name = name
        self.capacity = capacity
        self.inbox: queue.Queue[object] = queue.Queue()
        self.s3gen_inbox: queue.Queue[object] = queue.Queue()
        self.registers = 0
        self._ctx = zmq.Context()
        self._silent: frozenset[str] = frozenset()  # roles that stopped heartbeating; replaced whole, never mutated
        self._stop = threading.Event()
        self._out: queue.Queue[tuple[str, object, bytes | None]] = queue.Queue()
        self._backend_out: queue.Queue[tuple[str, object]] = queue.Queue()  # (role, message) to the broker
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ready(self, role: str) -> Ready:
        return Ready(
            version=PROTOCOL_VERSION, role=role, slot=self.name, capacity=self.capacity, device="test",
            weights="random", pid=os.getpid(),
        )  # fmt: skip

    def _run(self) -> None:
        s = self.settings
        t3 = make_socket(self._ctx, zmq.DEALER, identity=f"{self.name}/t3".encode())
        s3 = make_socket(self._ctx, zmq.DEALER, identity=f"{self.name}/s3gen".encode())
        pub = make_socket(self._ctx, zmq.XPUB)
        for sock in (t3, s3):
            sock.connect(s.connect(s.backend_port))
        results_at = s.connect(s.results_in_port)
        pub.connect(results_at)
        try:
            # As the S3Gen worker does: ready only once the broker hears what we publish.
            if await_subscriber(pub, self._stop, results_at):
                self._serve(t3, s3, pub)
        finally:
            for sock in (t3, s3, pub):
                sock.close(linger=100)

    def _serve(self, t3: zmq.Socket, s3: zmq.Socket, pub: zmq.Socket) -> None:
        codec = Codec()
        s = self.settings
        t3.send(codec.encode(self._ready("t3"))[0])
        s3.send(codec.encode(self._ready("s3gen"))[0])
        beat = codec.encode(Heartbeat())[0]
        next_beat = 0.0
        while not self._stop.is_set():
            for sock, role, inbox in ((t3, "t3", self.inbox), (s3, "s3gen", self.s3gen_inbox)):
                while sock.poll(0):
                    msg, _ = codec.decode(sock.recv_multipart())
                    if isinstance(msg, Register):
                        self.registers += 1
                        if role not in self._silent:
                            sock.send(codec.encode(self._ready(role))[0])
                    elif isinstance(msg, Job) and self.auto_chunks and "hold" not in msg.text:
                        self.answered.append(msg)
                        self.finish(msg, self.auto_chunks, samples=2400)
                    elif not isinstance(msg, Heartbeat):
                        inbox.put(msg)
            while pub.poll(0):
                pub.recv()  # the subscription again, from a restarted broker
            while not self._out.empty():
                topic, msg, frame = self._out.get()
                pub.send_multipart([topic.encode(), *codec.encode(msg, *([frame] if frame else []))])
            while not self._backend_out.empty():
                role, msg = self._backend_out.get()
                (t3 if role == "t3" else s3).send(codec.encode(msg)[0])
            if time.monotonic() >= next_beat:
                for sock, role in ((t3, "t3"), (s3, "s3gen")):
                    if role not in self._silent:
                        sock.send(beat)
                next_beat = time.monotonic() + s.heartbeat_interval / 2
            time.sleep(0.01)

    # -- driving ------------------------------------------------------------------------------------

    def next_job(self, timeout: float = 5.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(msg, Job):
                return msg

    def audio(self, job: Job, seq: int, final: bool = False, samples: int = 960) -> None:
        metrics = Metrics(weights="random", chunks=seq, audio_seconds=seq * samples / 24000)
        msg = Audio(
            job=job.job, attempt=job.attempt, slot=self.name, seq=seq, final=final, tokens=1, sample_rate=24000,
            metrics=metrics, t3_span=Span(0, 0), s3gen_span=Span(0, 0),
        )  # fmt: skip
        tone = 0.3 * np.sin(np.arange(samples, dtype=np.float32) * 0.05).astype(np.float32)
        self._out.put((job.client, msg, tone.tobytes()))

    def done(self, job: Job, chunks: int, samples: int = 960) -> None:
        metrics = Metrics(weights="random", chunks=chunks, audio_seconds=chunks * samples / 24000)
        self._out.put(
            (job.client, Done(job=job.job, attempt=job.attempt, slot=self.name, chunks=chunks, metrics=metrics), None)
        )

    def finish(self, job: Job, chunks: int = 2, samples: int = 960) -> None:
        for seq in range(1, chunks + 1):
            self.audio(job, seq, final=seq == chunks, samples=samples)
        self.done(job, chunks, samples)

    def goodbye(self, role: str, reason: str) -> None:
        """Say Goodbye as that worker's link does when its loop crashes, then fall silent (the sockets
        stay open, so only the Goodbye can tell the broker: no disconnect, no missed heartbeat for a while)."""
        self._silent = self._silent | {role}
        self._backend_out.put((role, Goodbye(reason=reason)))

    def silence(self, *roles: str) -> None:
        """Stop heartbeating (as a hung or killed worker would) but keep the sockets; both roles by default."""
        self._silent = self._silent | set(roles or ("t3", "s3gen"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._ctx.term()
