"""`python -m engine.t3_worker --slot NAME --device cuda:N|cpu`: text → speech-token chunks.

Takes jobs from the broker, runs the streaming T3 loop, and pushes each token chunk down the slot's
pipe to its S3Gen worker, the voice reference riding along with the first chunk. While S3Gen vocodes
chunk N, this process is already sampling chunk N+1. A cancel (or a broker that forgot the job)
stops sampling within one token step.
"""

from __future__ import annotations

import logging
import threading
import time

import msgspec
import numpy as np
import torch
import zmq

from broker.protocol import Abort, Cancel, Codec, Failed, Job, Span, Tokens, array_frame
from broker.sockets import make_socket
from engine.errors import InvalidInput
from engine.synthesizer import Engine
from engine.worker_link import BrokerLink
from engine.worker_main import WorkerConfig, ready_message, run_worker

log = logging.getLogger(__name__)
PIPE_HWM = 256  # token chunks in flight to S3Gen; beyond this T3 waits (S3Gen is far behind)
WHOLE = 10**9  # chunk size for regular synthesis: one chunk per text piece


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


class T3Worker:
    def __init__(self, config: WorkerConfig, engine: Engine, ctx: zmq.Context, stop: threading.Event) -> None:
        self.config = config
        self.engine = engine
        self.stop = stop
        self.codec = Codec()
        self.link = BrokerLink(ctx, config.broker, ready_message("t3", config, engine))
        self.pipe = make_socket(ctx, zmq.PUSH, hwm=PIPE_HWM)
        self.pipe.connect(config.worker.pipe_address())

    def run(self) -> None:
        self.link.start()
        log.info(
            "slot %s: T3 ready on %s (weights %s)", self.config.worker.slot, self.engine.device, self.engine.weights
        )
        try:
            while not self.stop.is_set():
                if not self.link.inbound.poll(200):
                    continue
                msg, bulk = self.link.receive()
                if isinstance(msg, Job):
                    self.run_job(msg, bytes(bulk[0]) if msg.has_reference and bulk else None)
                elif isinstance(msg, Cancel):
                    pass  # recorded by the link; matters only while its job runs
        finally:
            self.link.stop()
            self.pipe.close()

    def run_job(self, job: Job, reference: bytes | None) -> None:
        accepted = time.monotonic()
        generation = self.link.generation

        def should_stop() -> bool:
            return self.stop.is_set() or self.link.is_cancelled(job.job) or self.link.generation != generation

        sent, finished = 0, False
        try:
            pieces, params, seed = self.engine.prepare(job.text, job.params)
            conds = self.engine.conditionals(reference, params.exaggeration)
            first = params.first_chunk_size or self.engine.settings.first_chunk_size
            if not job.stream:
                params, first = msgspec.structs.replace(params, chunk_size=WHOLE), WHOLE
            specs, ref_frames = reference_frames(conds.gen)
            for chunk in self.engine.token_chunks(pieces, conds, params, seed, first, should_stop):
                header = Tokens(
                    job=job.job,
                    client=job.client,
                    attempt=job.attempt,
                    seq=chunk.seq,
                    final=chunk.final,
                    generated=chunk.generated,
                    seed=seed,
                    accepted_at=accepted,
                    span=Span(chunk.t_start, chunk.t_end),
                    stream=job.stream,
                    reference=specs if chunk.seq == 1 else [],
                )
                tokens = np.asarray(chunk.tokens, dtype=np.int32)
                bulk = [memoryview(tokens).cast("B"), *(ref_frames if chunk.seq == 1 else [])]
                if not self._push(header, bulk, should_stop):
                    break
                sent += 1
                finished = chunk.final
        except InvalidInput as exc:
            self.link.send(
                Failed(job=job.job, attempt=job.attempt, code="invalid_input", message=str(exc), field=exc.field)
            )
        except Exception as exc:
            log.exception("job %s failed", job.job)
            self.link.send(Failed(job=job.job, attempt=job.attempt, code="internal", message=f"T3 failed: {exc}"))
        cancelled = self.link.cancelled_at(job.job)
        if cancelled is not None and not finished:
            log.info("job %s stopped %.3f s after its cancel arrived", job.job, time.monotonic() - cancelled)
        if sent and not finished:
            # S3Gen holds state for this job; tell it to drop it (best effort: it may be gone).
            deadline = time.monotonic() + 1.0
            self._push(Abort(job=job.job), [], lambda: time.monotonic() > deadline)

    def _push(self, header: object, bulk: list, should_stop) -> bool:
        """Send to S3Gen, waiting while its queue is full, but never past a cancel."""
        frames = self.codec.encode(header, *bulk)
        while not should_stop():
            if self.pipe.poll(100, zmq.POLLOUT):
                self.pipe.send_multipart(frames, copy=False)
                return True
        return False


def main(argv: list[str] | None = None) -> int:
    return run_worker("t3", T3Worker, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
