"""What every endpoint shares: the services a lifespan builds, and how one broker job is opened,
watched and counted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import TypeAlias

from litestar.di import NamedDependency

from broker.client import AsyncClient, Chunk, JobError
from engine.metrics import Metrics
from gateway.api import ChunkMetrics
from gateway.metrics import GatewayMetrics
from gateway.requests import SynthesisRequest
from gateway.settings import GatewaySettings
from gateway.voices import VoiceStore

# OpenAI's built-in voice names all mean the checkpoint's built-in voice here.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")


class Services:
    def __init__(self, settings: GatewaySettings, client: AsyncClient, voices: VoiceStore) -> None:
        self.settings = settings
        self.client = client
        self.voices = voices
        self.metrics = GatewayMetrics()


# How route handlers ask for the services (by name; Litestar 3 drops inferred dependencies).
Svc: TypeAlias = NamedDependency[Services]


async def resolve_voice(svc: Services, req: SynthesisRequest) -> bytes | None:
    """Uploaded audio wins; else a stored voice by name or id; else the built-in voice (None)."""
    if req.reference is not None:
        await asyncio.to_thread(svc.voices.validate, req.reference)
        return req.reference
    if req.voice and req.voice not in ("default", *OPENAI_VOICES):
        return svc.voices.audio(req.voice)
    return None


async def open_job(svc: Services, req: SynthesisRequest, endpoint: str, regular: bool = False):
    """Submit; JobError (busy, bad input) is raised here, before any response has started."""
    svc.metrics.requests.labels(endpoint).inc()
    reference = await resolve_voice(svc, req)
    try:
        return await svc.client.open(req.text, params=req.params, reference=reference, regular=regular)
    except JobError as exc:
        svc.metrics.errors.labels(exc.code).inc()
        raise


@contextlib.contextmanager
def serving(svc: Services) -> Iterator[None]:
    """One job being served: counted in flight, and its JobError (re-raised) counted by code."""
    svc.metrics.in_flight.inc()
    try:
        yield
    except JobError as exc:
        svc.metrics.errors.labels(exc.code).inc()
        raise
    finally:
        svc.metrics.in_flight.dec()


def count_chunk(svc: Services, tally: Metrics, chunk: Chunk, started: float) -> ChunkMetrics:
    """Count a chunk on its stream's tally (time from the request's start at the gateway), observe first
    audio once, and give the chunk's metrics as they are sent."""
    had_audio = tally.first_chunk_latency is not None
    tally.add_audio(len(chunk.pcm), chunk.sample_rate, time.monotonic() - started)
    if not had_audio and tally.first_chunk_latency is not None:
        svc.metrics.first_chunk.observe(tally.first_chunk_latency)
    return chunk_metrics(chunk, tally)


def end_tally(svc: Services, tally: Metrics, started: float) -> None:
    """The stream ended well: its RTF, over its whole time, goes to the gateway's metrics."""
    tally.end(time.monotonic() - started)
    if tally.rtf is not None:
        svc.metrics.rtf.observe(tally.rtf)


def chunk_metrics(chunk: Chunk, tally: Metrics) -> ChunkMetrics:
    first = tally.first_chunk_latency
    return ChunkMetrics(
        first_chunk_latency=round(first, 4) if first is not None else None,
        total_latency=round(tally.total_latency, 4),
        rtf=round(tally.rtf, 4) if tally.rtf is not None else None,
        total_audio_duration=round(tally.audio_seconds, 4),
        chunks_generated=tally.chunks,
        weights=chunk.metrics.weights,
        slot=chunk.slot,
        job=chunk.job,
        tokens_generated=chunk.metrics.tokens_generated,
        valid_tokens=chunk.metrics.valid_tokens,
        t3_span=(chunk.t3_span.start, chunk.t3_span.end),
        s3gen_span=(chunk.s3gen_span.start, chunk.s3gen_span.end),
    )


async def watch(
    chunks: AsyncIterator[Chunk], every: float | None = None, stop: asyncio.Event | None = None
) -> AsyncIterator[Chunk | None]:
    """The chunks; None whenever `every` seconds pass without one (SSE keep-alives); and an early,
    quiet end once `stop` is set. Ending in any way closes `chunks`, which cancels an unfinished job."""
    pending: asyncio.Future | None = None
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(chunks))
            waiting = {pending} if stopper is None else {pending, stopper}
            done, _ = await asyncio.wait(waiting, timeout=every, return_when=asyncio.FIRST_COMPLETED)
            if stopper is not None and stopper in done:
                return
            if pending not in done:
                yield None
                continue
            task, pending = pending, None
            try:
                yield task.result()
            except StopAsyncIteration:
                return
    finally:
        for task in (pending, stopper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await chunks.aclose()
