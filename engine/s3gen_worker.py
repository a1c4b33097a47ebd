"""`python -m engine.s3gen_worker --slot NAME --device cuda:N|cpu`: token chunks → 24 kHz audio.

Pulls token chunks from the slot's T3 worker, keeps one S3GenStream per job, and publishes audio
chunks, then `done`, on the results channel with the client's id as topic. Audio chunks are numbered
1, 2, … per attempt; a token chunk out of order ends the job with `gap` rather than skipping audio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import zmq

from broker.protocol import (
    Abort,
    Audio,
    Cancel,
    Codec,
    Done,
    Error,
    ProtocolError,
    Span,
    Tokens,
    frame_array,
)
from broker.sockets import make_socket
from engine.metrics import Metrics
from engine.s3gen_stream import S3GenStream
from engine.synthesizer import SAMPLE_RATE, Engine
from engine.worker_link import BrokerLink
from engine.worker_main import WorkerConfig, ready_message, run_worker

log = logging.getLogger(__name__)
MAX_JOBS_PER_CAPACITY = 4  # per-job state kept at most: queued chunks of finished jobs drain first


@dataclass(slots=True)
class JobState:
    stream: S3GenStream
    client: str
    attempt: int
    accepted_at: float
    generation: int
    metrics: Metrics
    next_seq: int = 1  # token chunk expected next
    audio_seq: int = 0  # audio chunks published


class S3GenWorker:
    def __init__(self, config: WorkerConfig, engine: Engine, ctx: zmq.Context, stop: threading.Event) -> None:
        self.config = config
        self.engine = engine
        self.stop = stop
        self.codec = Codec()
        self.slot = config.worker.slot
        self.link = BrokerLink(ctx, config.broker, ready_message("s3gen", config, engine))
        self.pipe = make_socket(ctx, zmq.PULL)
        self.pipe.bind(config.worker.pipe_address())
        self.results = make_socket(ctx, zmq.PUB)
        self.results.connect(config.broker.connect(config.broker.results_in_port))
        self.jobs: OrderedDict[str, JobState] = OrderedDict()
        self.max_jobs = max(config.worker.capacity, 1) * MAX_JOBS_PER_CAPACITY

    def run(self) -> None:
        self.link.start()
        log.info("slot %s: S3Gen ready on %s (weights %s)", self.slot, self.engine.device, self.engine.weights)
        poller = zmq.Poller()
        poller.register(self.pipe, zmq.POLLIN)
        poller.register(self.link.inbound, zmq.POLLIN)
        try:
            while not self.stop.is_set():
                events = dict(poller.poll(200))
                if self.link.inbound in events:
                    msg, _ = self.link.receive()
                    if isinstance(msg, Cancel):
                        self._drop(msg.job, "cancelled")
                if self.pipe in events:
                    frames = self.pipe.recv_multipart(copy=False)
                    try:
                        msg, bulk = self.codec.decode([f.buffer for f in frames])
                    except ProtocolError as exc:
                        log.warning("dropped a malformed chunk: %s", exc)
                        continue
                    if isinstance(msg, Abort):
                        self._drop(msg.job, "aborted by T3")
                    elif isinstance(msg, Tokens):
                        self.on_tokens(msg, bulk)
                self._drop_stale()
        finally:
            self.link.stop()
            self.pipe.close()
            self.results.close()

    def _drop(self, job: str, why: str) -> None:
        if self.jobs.pop(job, None) is not None:
            log.info("job %s: state dropped (%s)", job, why)

    def _drop_stale(self) -> None:
        """Jobs begun under a broker registration that has since been replaced are nobody's now."""
        generation = self.link.generation
        for job in [j for j, s in self.jobs.items() if s.generation != generation]:
            del self.jobs[job]

    def on_tokens(self, msg: Tokens, bulk: list) -> None:
        if self.link.is_cancelled(msg.job):
            self.jobs.pop(msg.job, None)
            return
        state = self.jobs.get(msg.job)
        if state is not None and state.attempt != msg.attempt:
            del self.jobs[msg.job]  # a newer attempt of a re-dispatched job supersedes the old
            state = None
        try:
            if state is None:
                state = self._open(msg, bulk)
            if msg.seq != state.next_seq:
                raise ProtocolError(f"token chunk {msg.seq} arrived, {state.next_seq} expected")
            state.next_seq += 1
            self._vocode(msg, state, np.frombuffer(bulk[0], dtype=np.int32))
        except ProtocolError as exc:
            self.jobs.pop(msg.job, None)
            self._publish(
                msg.client, Error(job=msg.job, code="gap", message=str(exc), attempt=msg.attempt, slot=self.slot)
            )
        except Exception as exc:
            log.exception("job %s failed", msg.job)
            self.jobs.pop(msg.job, None)
            error = Error(
                job=msg.job, code="internal", message=f"S3Gen failed: {exc}", attempt=msg.attempt, slot=self.slot
            )
            self._publish(msg.client, error)

    def _open(self, msg: Tokens, bulk: list) -> JobState:
        if msg.seq != 1 or not msg.reference:
            # This process never saw the job's start: it restarted mid-job.
            raise ProtocolError(f"token chunk {msg.seq} of a job this worker never started")
        if len(bulk) != 1 + len(msg.reference):
            raise ProtocolError(f"{len(bulk) - 1} reference frames, header lists {len(msg.reference)}")
        device = self.engine.device
        ref = {
            spec.name: torch.from_numpy(frame_array(spec, frame).copy()).to(device)
            for spec, frame in zip(msg.reference, bulk[1:], strict=True)
        }
        holdback = None if msg.stream else 0
        while len(self.jobs) >= self.max_jobs:
            old, _ = self.jobs.popitem(last=False)
            log.warning("dropping state of %s: more than %d jobs open", old, self.max_jobs)
        state = JobState(
            stream=self.engine.open_s3gen(ref, msg.seed, holdback=holdback),
            client=msg.client,
            attempt=msg.attempt,
            accepted_at=msg.accepted_at,
            generation=self.link.generation,
            metrics=Metrics(weights=self.engine.weights),
        )
        self.jobs[msg.job] = state
        return state

    def _vocode(self, msg: Tokens, state: JobState, tokens: np.ndarray) -> None:
        started = time.monotonic()
        pcm = state.stream.push(tokens.tolist(), msg.final)
        pcm = self.engine.watermarker.apply(pcm, SAMPLE_RATE)
        ended = time.monotonic()
        metrics = state.metrics
        metrics.tokens_generated += msg.generated
        metrics.valid_tokens += len(tokens)
        if len(pcm) or msg.final:
            metrics.add_audio(len(pcm), SAMPLE_RATE, ended - state.accepted_at)
            state.audio_seq += 1
            audio = Audio(
                job=msg.job,
                attempt=msg.attempt,
                slot=self.slot,
                seq=state.audio_seq,
                final=msg.final,
                tokens=len(tokens),
                sample_rate=SAMPLE_RATE,
                metrics=metrics,
                t3_span=msg.span,
                s3gen_span=Span(started, ended),
            )
            pcm = np.ascontiguousarray(pcm, dtype=np.float32)
            self._publish(msg.client, audio, memoryview(pcm).cast("B"))
        if msg.final:
            del self.jobs[msg.job]
            done = Done(job=msg.job, attempt=msg.attempt, slot=self.slot, chunks=state.audio_seq, metrics=metrics)
            self._publish(msg.client, done)

    def _publish(self, topic: str, msg: object, *bulk) -> None:
        self.results.send_multipart([topic.encode(), *self.codec.encode(msg, *bulk)], copy=False)


def main(argv: list[str] | None = None) -> int:
    return run_worker("s3gen", S3GenWorker, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
