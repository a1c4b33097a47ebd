"""What the S3Gen worker knows of each job, which queued chunks it vocodes next, and the vocoding.

Policy and compute, free of sockets: a job with no audio yet goes first (time to first audio), then
the job whose listener, playing since its first audio, runs out soonest. A job's first chunk is
vocoded alone (it sets the time to first audio); later queued chunks are coalesced up to a token
budget (one flow call re-runs the voice prompt and the context once for all of them). Jobs whose flow
windows then have the same shape share one flow call. A job being vocoded (on a lane thread) is not
picked again until its pass is back, so its chunks stay in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.audio import SAMPLE_RATE
from engine.metrics import Metrics
from engine.models.s3gen.stream import S3GenStream, run_flow
from engine.models.watermark import Watermarker


class ChunkHeader(Protocol):
    """What a pass reads of a token chunk's header (the worker's wire message, or any object like it)."""

    final: bool


Queued = tuple[ChunkHeader, np.ndarray]  # a token chunk's header and its valid tokens


@dataclass(slots=True)
class JobState:
    stream: S3GenStream
    client: str
    attempt: int
    accepted_at: float
    generation: int
    metrics: Metrics
    streaming: bool
    next_seq: int = 1  # token chunk expected next
    audio_seq: int = 0  # audio chunks published
    first_audio_at: float | None = None
    queue: list[Queued] = field(default_factory=list)  # received, not yet vocoded
    busy: bool = False  # a pass of this job is being vocoded

    def urgency(self) -> tuple[int, float]:
        """Smaller is sooner."""
        if self.first_audio_at is None or not self.streaming:
            return (0, self.accepted_at)
        return (1, self.first_audio_at + self.metrics.audio_seconds)

    def next_chunks(self, coalesce_tokens: int) -> list[Queued]:
        """The queued chunks to vocode in one pass; never empty while the queue is not, never a part
        of a chunk."""
        if self.first_audio_at is None:
            return self.queue[:1]
        total, n = 0, 0
        for _, tokens in self.queue:
            if n and total + len(tokens) > coalesce_tokens:
                break
            total, n = total + len(tokens), n + 1
        return self.queue[:n]

    def shape(self, chunks: list[Queued]) -> tuple[int, int, int] | None:
        return self.stream.shape(sum(len(t) for _, t in chunks), chunks[-1][0].final)


Pass = tuple[str, JobState, list[Queued]]  # job, its state, the chunks it vocodes in this pass


def next_pass(jobs: dict[str, JobState], coalesce_tokens: int, flow_batch: int) -> list[Pass]:
    """The most urgent job with queued chunks and no pass under way, plus the next most urgent whose
    flow windows have its shape, up to `flow_batch` jobs. Empty when nothing is ready."""
    ready = sorted((s.urgency(), job) for job, s in jobs.items() if s.queue and not s.busy)
    if not ready:
        return []
    lead = jobs[ready[0][1]]
    chunks = lead.next_chunks(coalesce_tokens)
    group = [(ready[0][1], lead, chunks)]
    shape = lead.shape(chunks)
    if shape is None:
        return group
    for _, job in ready[1:]:
        if len(group) >= flow_batch:
            break
        other = jobs[job]
        theirs = other.next_chunks(coalesce_tokens)
        if other.shape(theirs) == shape:
            group.append((job, other, theirs))
    return group


def take(group: list[Pass]) -> None:
    """Hand a pass's chunks to a lane: off their queues, and their jobs busy until it is back."""
    for _, state, chunks in group:
        del state.queue[: len(chunks)]
        state.busy = True


def vocode(group: list[Pass], watermarker: Watermarker) -> tuple[float, list[np.ndarray | Exception]]:
    """Run one pass (compute only; on a lane thread): plan each job's window, one flow call for all,
    then HiFT and the watermark per job. Returns when it began and each job's audio or its failure."""
    started = time.monotonic()
    try:
        works = [
            state.stream.plan(np.concatenate([t for _, t in chunks]).tolist(), chunks[-1][0].final)
            for _, state, chunks in group
        ]
        flowing = [w for w in works if w.window]
        mels = iter(run_flow(flowing) if flowing else [])
    except Exception as exc:
        return started, [exc] * len(group)
    results: list[np.ndarray | Exception] = []
    for work in works:
        try:
            pcm = work.stream.finish(work, next(mels) if work.window else None)
            results.append(watermarker.apply(pcm, SAMPLE_RATE))
        except Exception as exc:
            results.append(exc)
    return started, results
