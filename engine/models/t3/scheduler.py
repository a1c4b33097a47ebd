"""Continuous batching of whole T3 jobs: text pieces, chunking, admission and removal around T3Batch.

The one T3 decoding path: a worker's batch of many jobs and the in-process engine's single job
(`run_alone`) both go through it. A job is decoded piece by piece (a long text's sentences), each piece a
BatchStream with the job's one generator, so a seeded job's chunks do not depend on who else is in the
batch. Before each decoding step at most `prefill_chunk` positions of one waiting prompt
are prefilled (the whole prompt when nobody is decoding): a new job, or a crowd of them, joins over
several steps while the running streams keep sampling one token per step.
Model code only: the T3 worker owns the sockets and calls `step()` in its loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence

import msgspec
import torch
from chatterbox.models.t3 import T3
from chatterbox.models.t3.modules.cond_enc import T3Cond

from engine.models.t3.batch import BatchStream, T3Batch
from engine.models.t3.chunks import TokenChunk, TokenChunker
from engine.params import SynthesisParams


class T3Request:
    """One job's T3 work: its pieces' text ids, voice, sampling, generator and chunker."""

    def __init__(
        self,
        key: str,
        pieces: Sequence[torch.Tensor],
        cond: T3Cond,
        params: SynthesisParams,
        *,
        first_chunk_size: int,
        max_new_tokens: int,
        generator: torch.Generator,
        whole: bool = False,
    ) -> None:
        if not pieces:
            raise ValueError("a request needs at least one piece of text")
        self.key = key
        self.pieces = list(pieces)
        self.cond = cond
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.generator = generator
        # whole: one chunk per text piece (regular synthesis) instead of the streaming schedule.
        self.chunker = TokenChunker(first_chunk_size, params.chunk_size, whole=whole)
        self.piece = 0  # index of the piece being decoded (or waiting for its prefill)
        self.stream: BatchStream | None = None  # the piece's stream while its prompt is prefilled

    @property
    def last_piece(self) -> bool:
        return self.piece == len(self.pieces) - 1


class StepResult(msgspec.Struct):
    chunks: list[tuple[str, TokenChunk]]  # in the order they were cut
    failed: list[tuple[str, str]]  # job, reason: these jobs are gone from the scheduler


class T3Scheduler:
    def __init__(self, t3: T3, prefill_chunk: int = 32) -> None:
        self.t3 = t3
        self.prefill_chunk = prefill_chunk
        self.batch = T3Batch(t3)
        self.waiting: deque[T3Request] = deque()  # prefills not yet done: new jobs, jobs' next pieces
        self.requests: dict[str, T3Request] = {}

    def __len__(self) -> int:
        return len(self.requests)

    def __contains__(self, key: str) -> bool:
        return key in self.requests

    def submit(self, request: T3Request) -> None:
        if request.key in self.requests:
            raise ValueError(f"{request.key} is already scheduled")
        self.requests[request.key] = request
        self.waiting.append(request)

    def cancel(self, key: str) -> bool:
        """Forget a job at a step boundary; the others' rows and tokens are untouched."""
        request = self.requests.pop(key, None)
        if request is None:
            return False
        if request in self.waiting:
            self.waiting.remove(request)
        if any(s.key == key for s in self.batch.streams):
            self.batch.remove(key)
        return True

    def step(self) -> StepResult:
        """Prefill part of the first waiting prompt, then sample one token for every running stream."""
        result = StepResult(chunks=[], failed=[])
        if self.waiting:
            request = self.waiting[0]
            try:
                if self._prefill(request, self.prefill_chunk if len(self.batch) else None):
                    self.waiting.popleft()
            except Exception as exc:  # this prompt failed (bad conditionals, out of memory): only its job
                self.waiting.popleft()
                del self.requests[request.key]
                result.failed.append((request.key, f"T3 prefill failed: {exc}"))
        if not len(self.batch):
            return result
        stop = self.t3.hp.stop_speech_token
        try:
            sampled = self.batch.step()
        except Exception as exc:  # the shared forward failed: every stream in it is lost
            for s in self.batch.streams:
                self.requests.pop(s.key, None)
                result.failed.append((s.key, f"T3 step failed: {exc}"))
            self.batch = T3Batch(self.t3)
            return result
        running = {s.key for s in self.batch.streams}
        for key, token in sampled.items():
            request = self.requests[key]
            if not (token == stop and not request.params.ignore_stop):
                if (chunk := request.chunker.add(token)) is not None:
                    result.chunks.append((key, chunk))
            if key in running:
                continue
            # This piece ended (stop token or its token bound): close its chunk, then the next piece.
            if (chunk := request.chunker.end_piece(request.last_piece)) is not None:
                result.chunks.append((key, chunk))
            if request.last_piece:
                del self.requests[key]
            else:
                request.piece += 1
                self.waiting.appendleft(request)  # a running job's next sentence before new jobs
        return result

    def _prefill(self, request: T3Request, positions: int | None) -> bool:
        """True once the request's current piece has joined the batch."""
        if request.stream is None:
            request.stream = BatchStream(request.key, request.params, request.max_new_tokens, request.generator)
            self.batch.begin(request.stream, request.pieces[request.piece], request.cond)
        if not self.batch.prefill(request.stream, positions):
            return False
        request.stream = None
        return True


def run_alone(t3: T3, request: T3Request, should_stop: Callable[[], bool] = lambda: False) -> Iterator[TokenChunk]:
    """One job's chunks as they are cut, through a scheduler of its own: the in-process engine's T3.

    `should_stop` is asked before every step, so a stop ends decoding within one token. A failed step
    raises. The chunk clock restarts after the consumer had each chunk: its time is not T3's.
    """
    scheduler = T3Scheduler(t3)
    scheduler.submit(request)
    while len(scheduler):
        if should_stop():
            scheduler.cancel(request.key)
            return
        result = scheduler.step()
        if result.failed:
            raise RuntimeError(result.failed[0][1])
        for _, chunk in result.chunks:
            yield chunk
            request.chunker.restart_clock()
