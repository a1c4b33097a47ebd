"""The ZeroMQ client for internal services, and its CLI.

    async with AsyncClient() as client:
        async for chunk in client.stream("Hello there.", temperature=0.7):
            play(chunk.pcm)

    with Client() as client:            # the same, blocking
        wav, summary = client.synthesize("Hello there.")

`python -m broker.client "TEXT" -o out.wav [--json]` streams one utterance and prints its figures.

A client is a DEALER to the broker's frontend (submit, cancel, ping, stats) and a SUB on the results
channel with its own id as topic. It pings the broker; a broker that stops answering or comes back
as a new instance ends the client's jobs in flight with `broker_lost`, so nothing waits forever.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator

import msgspec
import numpy as np
import zmq
import zmq.asyncio

from broker.protocol import (
    Accepted,
    Cancel,
    Codec,
    Done,
    Error,
    ErrorCode,
    Ping,
    Pong,
    ProtocolError,
    Span,
    Stats,
    StatsRequest,
    Submit,
)
from broker.settings import BrokerSettings
from broker.sockets import make_socket
from engine.audio import SAMPLE_RATE
from engine.cli import add_synthesis_arguments, synthesis_params
from engine.metrics import Metrics, Weights
from engine.params import SynthesisParams

SUBSCRIBE_TIMEOUT = 10.0  # s a submit waits for the broker to see our results subscription


class JobError(Exception):
    """The job ended with an error message; `code` says which kind, and whether to retry."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.retryable = code.retryable


class BrokerUnavailable(JobError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BROKER_LOST, message)


class Chunk(msgspec.Struct, kw_only=True):
    job: str
    seq: int
    pcm: np.ndarray  # float32 mono
    sample_rate: int
    final: bool
    slot: str
    metrics: Metrics  # as measured by the worker, from T3's acceptance of the job
    t3_span: Span
    s3gen_span: Span
    latency: float  # client side: seconds from submit to this chunk's arrival


class Summary(msgspec.Struct, kw_only=True):
    job: str
    slot: str
    chunks: int
    audio_seconds: float
    first_chunk_latency: float | None  # client side, submit → first chunk
    total_latency: float
    rtf: float | None
    metrics: Metrics  # the worker's own figures
    weights: Weights


class _Channel:
    """One job's inbox, filled by the receive task."""

    def __init__(self) -> None:
        # Bounded by the job itself: one entry per chunk plus accepted and the end.
        self.queue: asyncio.Queue[object] = asyncio.Queue()


class AsyncClient:
    def __init__(
        self,
        settings: BrokerSettings | None = None,
        *,
        chunk_timeout: float = 120.0,
        ctx: zmq.asyncio.Context | None = None,
    ) -> None:
        self.settings = settings or BrokerSettings.from_env()
        self.id = f"c-{uuid.uuid4().hex[:16]}"
        self.chunk_timeout = chunk_timeout
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.asyncio.Context()
        self._codec = Codec()
        self._jobs: dict[str, _Channel] = {}
        self._stats: deque[asyncio.Future[Stats]] = deque()
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._epoch = ""
        self._last_pong = 0.0
        self._subscribed = asyncio.Event()
        self._dealer: zmq.asyncio.Socket | None = None
        self._sub: zmq.asyncio.Socket | None = None

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect, and wait until the broker has seen our subscription (so no result is missed)."""
        s = self.settings
        self._dealer = make_socket(self._ctx, zmq.DEALER, identity=self.id.encode())
        self._dealer.connect(s.connect(s.frontend_port))
        self._sub = make_socket(self._ctx, zmq.SUB)
        self._sub.setsockopt(zmq.SUBSCRIBE, self.id.encode())
        self._sub.connect(s.connect(s.results_out_port))
        self._last_pong = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._receive_results()),
            asyncio.create_task(self._receive_replies()),
            asyncio.create_task(self._keepalive()),
        ]
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            await self.close()
            raise BrokerUnavailable(
                f"no broker answered at {s.connect(s.frontend_port)} within {timeout:g} s"
            ) from None

    async def close(self) -> None:
        for job in list(self._jobs):
            await self.cancel(job)
        if self._background:
            await asyncio.wait(self._background, timeout=1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for sock in (self._dealer, self._sub):
            if sock is not None:
                sock.close(linger=200)
        self._dealer = self._sub = None
        if self._own_ctx:
            self._ctx.term()

    # -- jobs ---------------------------------------------------------------------------------------

    async def open(
        self,
        text: str,
        *,
        reference: bytes | None = None,
        regular: bool = False,
        params: SynthesisParams | None = None,
        **overrides: object,
    ) -> AsyncIterator[Chunk]:
        """Submit and wait for the broker's answer: raises JobError at once for `busy` or bad input,
        else returns the job's chunks as an async generator (close it to cancel the job)."""
        params = msgspec.structs.replace(params or SynthesisParams(), **overrides)
        job = uuid.uuid4().hex
        channel = _Channel()
        self._jobs[job] = channel
        submit = Submit(job=job, client=self.id, text=text, params=params, stream=not regular)
        bulk = [reference] if reference else []
        submit.has_reference = bool(bulk)
        started = time.monotonic()
        try:
            while True:
                await self._until_subscribed(started + SUBSCRIBE_TIMEOUT - time.monotonic())
                await self._send(submit, *bulk)
                msg, _ = await self._next(channel)
                if not (isinstance(msg, Error) and msg.code is ErrorCode.UNSUBSCRIBED):
                    break
                self._subscribed.clear()  # a restarted broker: wait for our SUB to reach it, then resubmit
        except BaseException:
            self._jobs.pop(job, None)
            await self.cancel(job)
            raise
        if isinstance(msg, Error):
            self._jobs.pop(job, None)
            raise JobError(msg.code, msg.message, msg.field)
        if not isinstance(msg, Accepted):
            channel.queue.put_nowait((msg, _))  # a result overtook the acceptance; keep it
        return self._chunks(job, channel, started)

    async def _until_subscribed(self, timeout: float) -> None:
        if self._subscribed.is_set():
            return
        try:
            await asyncio.wait_for(self._subscribed.wait(), max(timeout, 0.0))
        except TimeoutError:
            message = f"the broker did not see our results subscription within {SUBSCRIBE_TIMEOUT:g} s"
            raise BrokerUnavailable(message) from None

    async def stream(self, text: str, **kwargs: object) -> AsyncIterator[Chunk]:
        """Audio chunks in order as they are produced. Leaving the loop early cancels the job."""
        chunks = await self.open(text, **kwargs)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def _next(self, channel: _Channel, queued: bool = False) -> tuple[object, list]:
        # Before its first result a job may wait in the broker's queue, which ends it by itself after
        # queue_timeout: silence is only a fault past that.
        limit = self.chunk_timeout + (self.settings.queue_timeout if queued else 0.0)
        try:
            return await asyncio.wait_for(channel.queue.get(), limit)
        except TimeoutError:
            raise JobError(ErrorCode.TIMEOUT, f"nothing from the server for {limit:g} s") from None

    async def _chunks(self, job: str, channel: _Channel, started: float) -> AsyncIterator[Chunk]:
        ended = False
        try:
            expected, attempt = 1, None
            while True:
                msg, frames = await self._next(channel, queued=attempt is None)
                if isinstance(msg, Accepted):
                    continue
                if isinstance(msg, Error):
                    ended = True
                    raise JobError(msg.code, msg.message, msg.field)
                if attempt is None:
                    attempt = msg.attempt
                seq = msg.chunks + 1 if isinstance(msg, Done) else msg.seq
                if msg.attempt != attempt or seq != expected:
                    gap = f"expected chunk {expected} of attempt {attempt}, got {seq} of {msg.attempt}"
                    raise JobError(ErrorCode.GAP, gap)
                if isinstance(msg, Done):
                    ended = True
                    return
                expected += 1
                pcm = np.frombuffer(frames[0], dtype=np.float32) if frames else np.zeros(0, np.float32)
                yield Chunk(
                    job=job,
                    seq=msg.seq,
                    pcm=pcm,
                    sample_rate=msg.sample_rate,
                    final=msg.final,
                    slot=msg.slot,
                    metrics=msg.metrics,
                    t3_span=msg.t3_span,
                    s3gen_span=msg.s3gen_span,
                    latency=time.monotonic() - started,
                )
        finally:
            self._jobs.pop(job, None)
            if not ended:
                # Not awaited here: when the consumer is being cancelled (an HTTP client went away),
                # an await in this finally would be cancelled too and the job would run on for no one.
                self._cancel_soon(job)

    async def synthesize(self, text: str, **kwargs: object) -> tuple[np.ndarray, Summary]:
        """The whole waveform (float32, 24 kHz). Streams underneath unless `regular=True`."""
        started = time.monotonic()
        parts: list[np.ndarray] = []
        tally = Metrics()  # client side: from the submit
        last: Chunk | None = None
        async for chunk in self.stream(text, **kwargs):
            parts.append(chunk.pcm)
            tally.add_audio(len(chunk.pcm), chunk.sample_rate, chunk.latency)
            last = chunk
        assert last is not None  # a stream always ends with a final chunk before `done`
        wav = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        tally.end(time.monotonic() - started)
        summary = Summary(
            job=last.job,
            slot=last.slot,
            chunks=last.seq,
            audio_seconds=tally.audio_seconds,
            first_chunk_latency=tally.first_chunk_latency,
            total_latency=tally.total_latency,
            rtf=tally.rtf,
            metrics=last.metrics,
            weights=last.metrics.weights,
        )
        return wav, summary

    def _cancel_soon(self, job: str) -> None:
        task = asyncio.get_running_loop().create_task(self.cancel(job))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def cancel(self, job: str) -> None:
        with contextlib.suppress(zmq.ZMQError):
            await self._send(Cancel(job=job))

    async def stats(self, timeout: float = 5.0) -> Stats:
        future: asyncio.Future[Stats] = asyncio.get_running_loop().create_future()
        self._stats.append(future)
        await self._send(StatsRequest())
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BrokerUnavailable(f"no stats from the broker within {timeout:g} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._stats.remove(future)

    async def wait_live(self, timeout: float) -> None:
        """Return once some slot is live; raise BrokerUnavailable after `timeout` seconds (0: don't wait)."""
        deadline = time.monotonic() + timeout
        while timeout > 0:
            if any(s.live for s in (await self.stats()).slots):
                return
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"no slot became live within {timeout:g} s; see the workers' logs")
            await asyncio.sleep(0.5)

    # -- plumbing -----------------------------------------------------------------------------------

    async def _send(self, msg: object, *bulk: bytes) -> None:
        if self._dealer is None:
            raise BrokerUnavailable("client is closed")
        await self._dealer.send_multipart(self._codec.encode(msg, *bulk))

    async def _receive_results(self) -> None:
        codec = Codec()
        while True:
            frames = await self._sub.recv_multipart(copy=False)
            try:
                msg, bulk = codec.decode([f.buffer for f in frames[1:]])
            except ProtocolError:
                continue
            channel = self._jobs.get(getattr(msg, "job", ""))
            if channel is not None:
                channel.queue.put_nowait((msg, bulk))

    async def _receive_replies(self) -> None:
        codec = Codec()
        while True:
            frames = await self._dealer.recv_multipart()
            try:
                msg, _ = codec.decode(frames)
            except ProtocolError:
                continue
            if isinstance(msg, Pong):
                self._last_pong = time.monotonic()
                if self._epoch and msg.epoch != self._epoch:
                    self._fail_all(f"the broker restarted (instance {self._epoch} → {msg.epoch})")
                self._epoch = msg.epoch
                if msg.subscribed:
                    self._subscribed.set()
                else:
                    self._subscribed.clear()  # pings go fast again until the broker sees our SUB
            elif isinstance(msg, Error):
                channel = self._jobs.get(msg.job)
                if channel is not None:
                    channel.queue.put_nowait((msg, []))
            elif isinstance(msg, Stats) and self._stats:
                future = self._stats.popleft()
                if not future.done():
                    future.set_result(msg)

    async def _keepalive(self) -> None:
        """Ping fast until subscribed, then at the heartbeat interval; notice a silent broker."""
        s = self.settings
        while True:
            await self._send(Ping(client=self.id))
            await asyncio.sleep(s.heartbeat_interval if self._subscribed.is_set() else 0.05)
            silent = time.monotonic() - self._last_pong
            if silent > s.expiry and self._jobs:
                self._fail_all(f"the broker has been silent for {silent:.1f} s")

    def _fail_all(self, reason: str) -> None:
        for job, channel in self._jobs.items():
            channel.queue.put_nowait((Error(job=job, code=ErrorCode.BROKER_LOST, message=reason), []))


class Client:
    """Blocking façade: the AsyncClient on a private event loop in a background thread."""

    def __init__(self, settings: BrokerSettings | None = None, **kwargs: object) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="broker-client", daemon=True)
        self._thread.start()
        self._async = self._call(self._make(settings, kwargs))
        self._call(self._async.start())

    async def _make(self, settings: BrokerSettings | None, kwargs: dict) -> AsyncClient:
        return AsyncClient(settings, **kwargs)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def id(self) -> str:
        return self._async.id

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def stream(self, text: str, **kwargs: object) -> Iterator[Chunk]:
        agen = self._async.stream(text, **kwargs)
        try:
            while True:
                try:
                    yield self._call(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._call(agen.aclose())

    def synthesize(self, text: str, **kwargs: object) -> tuple[np.ndarray, Summary]:
        return self._call(self._async.synthesize(text, **kwargs))

    def stats(self, timeout: float = 5.0) -> Stats:
        return self._call(self._async.stats(timeout))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m broker.client", description="Stream one utterance via the broker.")
    add_synthesis_arguments(p)
    p.add_argument("--regular", action="store_true", help="regular synthesis instead of streaming")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for a live slot first")
    args = p.parse_args(argv)
    import soundfile as sf

    params = synthesis_params(args)
    reference = args.voice.read_bytes() if args.voice else None

    async def run() -> tuple[np.ndarray, Summary]:
        client = AsyncClient()
        await client.start(args.connect_timeout)
        try:
            await client.wait_live(args.wait)
            return await client.synthesize(args.text, params=params, reference=reference, regular=args.regular)
        finally:
            await client.close()

    try:
        wav, summary = asyncio.run(run())
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, wav, SAMPLE_RATE, subtype="PCM_16")
    out = sys.stderr if args.json else sys.stdout
    if summary.weights == "random":
        print("NOTE: the server runs RANDOM weights; the audio is noise.", file=out)
    first = f"{summary.first_chunk_latency:.2f} s" if summary.first_chunk_latency is not None else "-"
    rtf = f"{summary.rtf:.2f}" if summary.rtf is not None else "-"
    print(
        f"wrote {args.output}: {summary.audio_seconds:.2f} s of audio in {summary.chunks} chunks from slot "
        f"{summary.slot}; first chunk {first} (client side), total {summary.total_latency:.2f} s, RTF {rtf}",
        file=out,
    )
    if args.json:
        print(msgspec.json.encode(summary).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
