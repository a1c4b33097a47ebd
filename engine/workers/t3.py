"""`python -m engine.workers.t3 --slot NAME --device cuda:N|cpu [--capacity N]`: text → speech-token chunks.

Takes jobs from the broker, decodes all of them together (T3Scheduler: continuous batching), and
pushes each token chunk down the slot's pipe to its S3Gen worker, the voice reference riding along
with a job's first chunk. While S3Gen vocodes chunk N, this process is already sampling chunk N+1.
A cancel (or a broker that forgot the job) takes the job out of the batch within one token step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import msgspec
import numpy as np
import torch
import zmq

from broker.dispatch import Dispatcher
from broker.protocol import Abort, Cancel, Codec, ErrorCode, Failed, Job, Load, Span, Tokens, array_frame
from broker.sockets import make_socket
from engine.errors import InvalidInput
from engine.models.synthesizer import Engine
from engine.models.t3.chunks import TokenChunk
from engine.models.t3.scheduler import T3Scheduler
from engine.workers.link import BrokerLink
from engine.workers.main import WorkerConfig, ready_message, run_worker

log = logging.getLogger(__name__)
PIPE_HWM = 256  # token chunks in flight to S3Gen; beyond this T3 waits (S3Gen is far behind)


def reference_frames(ref: dict) -> tuple[list, list]:
    """S3Gen's voice reference (prompt tokens, prompt mel, speaker embedding) as specs + raw frames."""
    specs, frames = [], []
    for name, value in ref.items():
        if not isinstance(value, torch.Tensor):
            continue
        array = value.detach().cpu()
        array = array.float().numpy() if array.is_floating_point() else array.numpy()
        spec, frame = array_frame(array)
        specs.append(msgspec.structs.replace(spec, name=name))
        frames.append(frame)
    return specs, frames


@dataclass(slots=True)
class Running:
    """A job the T3 scheduler holds: what its chunks' headers need, and what was sent of it."""

    job: Job
    accepted: float
    generation: int
    seed: int
    specs: list
    ref_frames: list
    sent: int = 0  # token chunks queued for S3Gen


class T3Worker:
    """One loop: take jobs and cancels, one batched T3 step for every running job, push its chunks.

    Jobs join the batch at step boundaries (continuous batching) up to the slot's capacity, which the
    broker honours. Chunks wait in an outbox when the pipe to S3Gen is full; T3 then stops stepping
    (back-pressure) but still takes cancels.
    """

    def __init__(self, config: WorkerConfig, engine: Engine, ctx: zmq.Context, stop: threading.Event) -> None:
        self.config = config
        self.engine = engine
        self.stop = stop
        self.codec = Codec()
        self.link = BrokerLink(ctx, config.broker, ready_message("t3", config, engine))
        self.pipe = make_socket(ctx, zmq.PUSH, hwm=PIPE_HWM)
        self.pipe.connect(config.worker.pipe_address())
        self.scheduler = T3Scheduler(engine.model.t3, prefill_chunk=config.worker.prefill_chunk)
        self.running: dict[str, Running] = {}
        self.outbox: deque[tuple[str, list]] = deque()  # (job, frames) waiting for room in the pipe
        self.load_sent: int | None = None  # running jobs last reported to S3Gen
        # A Cancel is recorded by the link (is_cancelled); _reap acts on it, so here it needs no work.
        self.from_link = Dispatcher("t3 from the broker", {Job: self._job, Cancel: lambda msg, bulk: None})

    def run(self) -> None:
        # However the loop ends, the link's last word to the broker is a Goodbye (a crash re-raises).
        with self.link.running():
            log.info(
                "slot %s: T3 ready on %s (weights %s, capacity %d)",
                self.config.worker.slot, self.engine.device, self.engine.weights, self.config.worker.capacity,
            )  # fmt: skip
            poller = zmq.Poller()
            poller.register(self.link.inbound, zmq.POLLIN)
            try:
                while not self.stop.is_set():
                    self._turn(poller)
            finally:
                for key in list(self.running):
                    self._end(key)
                deadline = time.monotonic() + 1.0
                while self.outbox and time.monotonic() < deadline and self.pipe.poll(100, zmq.POLLOUT):
                    self._flush()
                self.pipe.close()

    def _turn(self, poller: zmq.Poller) -> None:
        """One pass of the loop: take jobs and cancels, then one batched step if S3Gen has room."""
        busy = len(self.scheduler) and not self.outbox
        poller.register(self.pipe, zmq.POLLOUT if self.outbox else 0)
        poller.poll(0 if busy else 200)
        self._take_messages()
        self._reap()
        self._report_load()
        if self._flush() and len(self.scheduler):
            self._step()

    def _take_messages(self) -> None:
        while self.link.inbound.poll(0):
            msg, bulk = self.link.receive()
            self.from_link(msg, bulk)

    def _job(self, job: Job, bulk: list) -> None:
        self._accept(job, bytes(bulk[0]) if job.has_reference and bulk else None)

    def _accept(self, job: Job, reference: bytes | None) -> None:
        if job.job in self.running:
            self._end(job.job)  # a new attempt of the same job supersedes the old one
        try:
            pieces, params, seed = self.engine.prepare(job.text, job.params)
            conds = self.engine.conditionals(reference, params.exaggeration)
            request = self.engine.t3_request(job.job, pieces, conds, params, seed, whole=not job.stream)
        except InvalidInput as exc:
            code = ErrorCode.INVALID_INPUT
            self.link.send(Failed(job=job.job, attempt=job.attempt, code=code, message=str(exc), field=exc.field))
            return
        except Exception as exc:
            log.exception("job %s failed", job.job)
            message = f"T3 failed: {exc}"
            self.link.send(Failed(job=job.job, attempt=job.attempt, code=ErrorCode.INTERNAL, message=message))
            return
        specs, ref_frames = reference_frames(conds.gen)
        self.running[job.job] = Running(job, time.monotonic(), self.link.generation, seed, specs, ref_frames)
        self.scheduler.submit(request)

    def _reap(self) -> None:
        """Stop jobs that were cancelled, or begun under a broker registration since replaced."""
        generation = self.link.generation
        for key, r in list(self.running.items()):
            if self.stop.is_set() or self.link.is_cancelled(key) or r.generation != generation:
                self._end(key)

    def _end(self, key: str) -> None:
        """Take a job out of the batch at a step boundary; S3Gen drops its state on the Abort."""
        r = self.running.pop(key)
        self.scheduler.cancel(key)
        cancelled = self.link.cancelled_at(key)
        if cancelled is not None:
            log.info("job %s stopped %.3f s after its cancel arrived", key, time.monotonic() - cancelled)
        self.outbox = deque(item for item in self.outbox if item[0] != key)
        if r.sent:
            self.outbox.append((key, self.codec.encode(Abort(job=key))))

    def _report_load(self) -> None:
        """Tell S3Gen how many jobs T3 holds whenever that changes (and once at start), in order with
        the chunks: once the last job's final chunk is out, S3Gen may use T3's idle cores."""
        running = len(self.running)
        if running != self.load_sent:
            self.outbox.append(("", self.codec.encode(Load(running=running))))
            self.load_sent = running

    def _step(self) -> None:
        result = self.scheduler.step()
        for key, reason in result.failed:
            r = self.running.pop(key)
            log.error("job %s failed: %s", key, reason)
            self.link.send(Failed(job=key, attempt=r.job.attempt, code=ErrorCode.INTERNAL, message=reason))
            if r.sent:
                self.outbox.append((key, self.codec.encode(Abort(job=key))))
        for key, chunk in result.chunks:
            r = self.running[key]
            self.outbox.append((key, self._encode(r, chunk)))
            r.sent += 1
            if chunk.final:
                del self.running[key]
        self._report_load()
        self._flush()

    def _encode(self, r: Running, chunk: TokenChunk) -> list:
        job = r.job
        first = chunk.seq == 1
        header = Tokens(
            job=job.job,
            client=job.client,
            attempt=job.attempt,
            seq=chunk.seq,
            final=chunk.final,
            generated=chunk.generated,
            seed=r.seed,
            accepted_at=r.accepted,
            span=Span(chunk.t_start, chunk.t_end),
            stream=job.stream,
            reference=r.specs if first else [],
        )
        tokens = np.asarray(chunk.tokens, dtype=np.int32)
        return self.codec.encode(header, memoryview(tokens).cast("B"), *(r.ref_frames if first else []))

    def _flush(self) -> bool:
        """Hand queued chunks to S3Gen without blocking; False while some still wait for room."""
        while self.outbox:
            try:
                self.pipe.send_multipart(self.outbox[0][1], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            self.outbox.popleft()
        return True


def main(argv: list[str] | None = None) -> int:
    return run_worker("t3", T3Worker, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
