"""Requests as users make them: SSE streams at a given concurrency, regular synthesis, the ZeroMQ
client, and the in-process engine; each turned into one StreamRecord."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import msgspec

from broker.client import Client, JobError
from engine.audio import SAMPLE_RATE
from engine.metrics import Metrics
from engine.params import SynthesisParams
from gateway import client as sse


class ChunkTiming(msgspec.Struct, array_like=True):
    """Seconds from the request's start (client clock = worker clock on one host)."""

    t3: tuple[float, float]
    s3gen: tuple[float, float]
    arrived: float


class StreamRecord(msgspec.Struct, kw_only=True):
    way: str  # sse, zmq, regular, inprocess
    text: int
    concurrency: int
    first_audio: float | None = None  # request → first audio at the client (regular: whole response)
    total: float = 0.0
    audio_seconds: float = 0.0
    chunks: int = 0
    tokens_generated: int = 0
    valid_tokens: int = 0
    transit_ms: list[float] = []  # per chunk: arrival − end of its vocoding (same host only)
    timeline: list[ChunkTiming] = []
    error: str | None = None

    @property
    def rtf(self) -> float | None:
        return self.total / self.audio_seconds if self.audio_seconds else None


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def sse_stream(url: str, text: str, index: int, params: SynthesisParams, concurrency: int, local: bool):
    fields = msgspec.structs.asdict(params) | {"text": text}
    record = StreamRecord(way="sse", text=index, concurrency=concurrency)
    try:
        result = sse.stream(url, fields)
    except (sse.GatewayError, httpx.HTTPError) as exc:
        record.error = str(exc)
        return record
    last = result.chunks[-1].metrics
    tally = result.tally()
    record.first_audio, record.total = tally.first_chunk_latency, tally.total_latency
    record.audio_seconds, record.chunks = tally.audio_seconds, tally.chunks
    record.tokens_generated, record.valid_tokens = last["tokens_generated"], last["valid_tokens"]
    if local:  # the workers' CLOCK_MONOTONIC is ours
        t0 = result.started
        record.transit_ms = [1000 * (c.arrived - c.metrics["s3gen_span"][1]) for c in result.chunks]
        record.timeline = [
            ChunkTiming(
                t3=(c.metrics["t3_span"][0] - t0, c.metrics["t3_span"][1] - t0),
                s3gen=(c.metrics["s3gen_span"][0] - t0, c.metrics["s3gen_span"][1] - t0),
                arrived=c.arrived - t0,
            )
            for c in result.chunks
        ]
    return record


def regular(url: str, text: str, index: int, params: SynthesisParams) -> StreamRecord:
    record = StreamRecord(way="regular", text=index, concurrency=1)
    fields = {k: str(v) for k, v in msgspec.structs.asdict(params).items() if v is not None} | {"text": text}
    started = time.monotonic()
    r = httpx.post(f"{url}/synthesize", data=fields, timeout=900)
    record.total = time.monotonic() - started
    if r.status_code != 200:
        record.error = f"{r.status_code}: {r.text[:200]}"
        return record
    record.first_audio = record.total  # nothing plays before the whole WAV is there
    record.audio_seconds = (len(r.content) - 44) / 2 / SAMPLE_RATE
    return record


def zmq_stream(client: Client, text: str, index: int, params: SynthesisParams) -> StreamRecord:
    record = StreamRecord(way="zmq", text=index, concurrency=1)
    started = time.monotonic()
    tally = Metrics()
    try:
        for chunk in client.stream(text, params=params):
            now = time.monotonic()
            tally.add_audio(len(chunk.pcm), chunk.sample_rate, now - started)
            record.transit_ms.append(1000 * (now - chunk.s3gen_span.end))
            record.tokens_generated = chunk.metrics.tokens_generated
            record.valid_tokens = chunk.metrics.valid_tokens
    except JobError as exc:
        record.error = str(exc)
    tally.end(time.monotonic() - started)
    record.first_audio, record.total = tally.first_chunk_latency, tally.total_latency
    record.audio_seconds, record.chunks = tally.audio_seconds, tally.chunks
    return record


def inprocess(engine, text: str, index: int, params: SynthesisParams) -> StreamRecord:
    """The seed's reference design: one process, T3 then S3Gen per chunk."""
    chunks = list(engine.stream(text, params))
    m = chunks[-1].metrics
    return StreamRecord(
        way="inprocess", text=index, concurrency=1, first_audio=m.first_chunk_latency, total=m.total_latency,
        audio_seconds=m.audio_seconds, chunks=len(chunks), tokens_generated=m.tokens_generated,
        valid_tokens=m.valid_tokens,
    )  # fmt: skip


def at_concurrency(
    run: Callable[[int], StreamRecord], requests: int, concurrency: int, tick: Callable[[], None]
) -> tuple[list[StreamRecord], float]:
    """`requests` calls of run(i), `concurrency` at a time; the records and the wall time of the lot."""

    def one(i: int) -> StreamRecord:
        try:
            return run(i)
        finally:
            tick()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        records = list(pool.map(one, range(requests)))
    return records, time.monotonic() - started
