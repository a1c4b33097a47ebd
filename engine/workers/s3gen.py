"""`python -m engine.workers.s3gen --slot NAME --device cuda:N|cpu`: token chunks → 24 kHz audio.

Pulls token chunks from the slot's T3 worker, keeps one S3GenStream per job, and publishes audio
chunks, then `done`, on the results channel with the client's id as topic. With many jobs at once it
vocodes the most urgent first, coalescing and batching as engine.models.s3gen.passes decides. Passes run on
lane threads while this loop keeps reading chunks and cancels: one lane while T3 decodes, more while
T3 reports no job (its cores are idle then). Audio chunks are numbered 1, 2, … per attempt; a token
chunk out of order ends the job with `gap` rather than skipping audio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
import zmq

from broker.dispatch import Dispatcher
from broker.protocol import (
    Abort,
    Audio,
    Cancel,
    Codec,
    Done,
    Error,
    ErrorCode,
    Load,
    ProtocolError,
    Span,
    Tokens,
    frame_array,
)
from broker.sockets import await_subscriber, make_socket
from engine.audio import SAMPLE_RATE
from engine.metrics import Metrics
from engine.models.s3gen.passes import JobState, Pass, next_pass, take, vocode
from engine.models.synthesizer import Engine
from engine.workers.link import BrokerLink
from engine.workers.main import WorkerConfig, ready_message, run_worker

log = logging.getLogger(__name__)
MAX_JOBS_PER_CAPACITY = 4  # per-job state kept at most: queued chunks of finished jobs drain first
LANE_POLL_MS = 5  # how often the loop looks for finished passes while one runs


class S3GenWorker:
    """One loop: read every token chunk that has arrived into its job's queue, collect finished
    passes and publish their audio, then start the most urgent job's queued chunks on a free lane
    (coalesced up to `coalesce_tokens`, batched through the flow with other jobs whose windows have
    the same shape). Under load no stream starves, and each flow call carries more tokens and more
    streams; once T3 is idle a second lane vocodes another job on T3's cores."""

    def __init__(self, config: WorkerConfig, engine: Engine, ctx: zmq.Context, stop: threading.Event) -> None:
        self.config = config
        self.engine = engine
        self.stop = stop
        self.codec = Codec()
        self.slot = config.worker.slot
        self.link = BrokerLink(ctx, config.broker, ready_message("s3gen", config, engine))
        self.pipe = make_socket(ctx, zmq.PULL)
        self.pipe.bind(config.worker.pipe_address())
        self.results_at = config.broker.connect(config.broker.results_in_port)
        self.results = make_socket(ctx, zmq.XPUB)  # a PUB that hears subscriptions: see await_subscriber
        self.results.connect(self.results_at)
        self.jobs: OrderedDict[str, JobState] = OrderedDict()
        self.max_jobs = max(config.worker.capacity, 1) * MAX_JOBS_PER_CAPACITY
        self.idle_lanes = config.worker.idle_lanes or (2 if engine.device == "cpu" else 1)
        self.lanes = ThreadPoolExecutor(
            self.idle_lanes, thread_name_prefix="s3gen-pass", initializer=use_device, initargs=(engine.device,)
        )
        self.passes: dict[Future, list[Pass]] = {}  # under way on a lane
        self.t3_running: int | None = None  # jobs T3 reported; unknown counts as busy
        self.from_link = Dispatcher("s3gen from the broker", {Cancel: lambda msg: self._drop(msg.job, "cancelled")})
        self.from_t3 = Dispatcher(
            "s3gen pipe",
            {Abort: lambda msg, bulk: self._drop(msg.job, "aborted by T3"), Load: self._load, Tokens: self.on_tokens},
        )

    def free_lanes(self) -> int:
        return (self.idle_lanes if self.t3_running == 0 else 1) - len(self.passes)

    def run(self) -> None:
        # Ready (sent by the link) only once the broker hears what we publish.
        if not await_subscriber(self.results, self.stop, self.results_at):
            return  # stopped before the broker came; the context's teardown closes the sockets
        # However the loop ends, the link's last word to the broker is a Goodbye (a crash re-raises).
        with self.link.running():
            log.info(
                "slot %s: S3Gen ready on %s (weights %s, %d lanes while T3 is idle)",
                self.slot, self.engine.device, self.engine.weights, self.idle_lanes,
            )  # fmt: skip
            poller = zmq.Poller()
            poller.register(self.pipe, zmq.POLLIN)
            poller.register(self.link.inbound, zmq.POLLIN)
            try:
                while not self.stop.is_set():
                    self._turn(poller)
            finally:
                self.lanes.shutdown(wait=False, cancel_futures=True)
                self.pipe.close()
                self.results.close()

    def _turn(self, poller: zmq.Poller) -> None:
        """One pass of the loop: wait a little, read what arrived, publish what is done, start passes."""
        startable = self.free_lanes() > 0 and any(s.queue and not s.busy for s in self.jobs.values())
        poller.poll(0 if startable else LANE_POLL_MS if self.passes else 200)
        while self.link.inbound.poll(0):
            msg, _ = self.link.receive()
            self.from_link(msg)
        while self.pipe.poll(0):
            self._take(self.pipe.recv_multipart(copy=False))
        while self.results.poll(0):
            self.results.recv()  # the subscription again, from a restarted broker
        self._drop_stale()
        self._collect()
        worker = self.config.worker
        while self.free_lanes() > 0:
            group = next_pass(self.jobs, worker.coalesce_tokens, worker.flow_batch)
            if not group:
                break
            take(group)
            self.passes[self.lanes.submit(vocode, group, self.engine.watermarker)] = group

    def _take(self, frames: list) -> None:
        try:
            msg, bulk = self.codec.decode([f.buffer for f in frames])
        except ProtocolError as exc:
            log.warning("dropped a malformed chunk: %s", exc)
            return
        self.from_t3(msg, bulk)

    def _load(self, msg: Load, bulk: list) -> None:
        self.t3_running = msg.running

    def _drop(self, job: str, why: str) -> None:
        if self.jobs.pop(job, None) is not None:
            log.info("job %s: state dropped (%s)", job, why)

    def _drop_stale(self) -> None:
        """Jobs begun under a broker registration that has since been replaced are nobody's now."""
        generation = self.link.generation
        for job in [j for j, s in self.jobs.items() if s.generation != generation]:
            del self.jobs[job]

    def on_tokens(self, msg: Tokens, bulk: list) -> None:
        """Queue a token chunk on its job (opening the job on its first chunk)."""
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
            state.queue.append((msg, np.frombuffer(bulk[0], dtype=np.int32)))
        except ProtocolError as exc:
            self.jobs.pop(msg.job, None)
            gap = Error(job=msg.job, code=ErrorCode.GAP, message=str(exc), attempt=msg.attempt, slot=self.slot)
            self._publish(msg.client, gap)

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
            streaming=msg.stream,
        )
        self.jobs[msg.job] = state
        return state

    def _collect(self) -> None:
        """Publish the audio of every pass that is back (or its jobs' failures)."""
        for future in [f for f in self.passes if f.done()]:
            group = self.passes.pop(future)
            started, results = future.result()
            for (job, state, chunks), result in zip(group, results, strict=True):
                state.busy = False
                if self.jobs.get(job) is not state:
                    continue  # cancelled, aborted or superseded while it was vocoded
                if isinstance(result, Exception):
                    self._fail(job, state, chunks[0][0], result)
                else:
                    self._emit(job, state, chunks, result, started)

    def _fail(self, job: str, state: JobState, msg: Tokens, exc: Exception) -> None:
        log.error("job %s failed in S3Gen", job, exc_info=exc)
        self.jobs.pop(job, None)
        message = f"S3Gen failed: {exc}"
        error = Error(job=job, code=ErrorCode.INTERNAL, message=message, attempt=msg.attempt, slot=self.slot)
        self._publish(state.client, error)

    def _emit(self, job: str, state: JobState, chunks: list, pcm: np.ndarray, started: float) -> None:
        ended = time.monotonic()
        msg, last = chunks[0][0], chunks[-1][0]
        metrics = state.metrics
        metrics.tokens_generated += sum(m.generated for m, _ in chunks)
        tokens = sum(len(t) for _, t in chunks)
        metrics.valid_tokens += tokens
        if len(pcm) or last.final:
            if state.first_audio_at is None:
                state.first_audio_at = ended
            metrics.add_audio(len(pcm), SAMPLE_RATE, ended - state.accepted_at)
            state.audio_seq += 1
            audio = Audio(
                job=job,
                attempt=msg.attempt,
                slot=self.slot,
                seq=state.audio_seq,
                final=last.final,
                tokens=tokens,
                sample_rate=SAMPLE_RATE,
                metrics=metrics,
                t3_span=Span(msg.span.start, last.span.end),
                s3gen_span=Span(started, ended),
            )
            pcm = np.ascontiguousarray(pcm, dtype=np.float32)
            self._publish(state.client, audio, memoryview(pcm).cast("B"))
        if last.final:
            del self.jobs[job]
            done = Done(job=job, attempt=msg.attempt, slot=self.slot, chunks=state.audio_seq, metrics=metrics)
            self._publish(state.client, done)

    def _publish(self, topic: str, msg: object, *bulk) -> None:
        self.results.send_multipart([topic.encode(), *self.codec.encode(msg, *bulk)], copy=False)


def use_device(device: str) -> None:
    """A lane thread's current CUDA device is the worker's (a new thread's is cuda:0), so nothing made
    without an explicit device lands on another GPU."""
    where = torch.device(device)
    if where.type == "cuda" and where.index is not None:
        torch.cuda.set_device(where)


def main(argv: list[str] | None = None) -> int:
    return run_worker("s3gen", S3GenWorker, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
