"""The Litestar app: SSE streaming, regular synthesis, OpenAI-compatible speech, voices, health, stats.

A lifespan owns the broker connection (the AsyncClient: its ZeroMQ context, sockets and receive
tasks); handlers reach it through `Services`, injected as a dependency. Every job is a broker job;
the gateway itself never touches a model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from litestar import Litestar, Response, delete, get, post, route
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream
from litestar.static_files import create_static_files_router

from broker.client import AsyncClient, Chunk, JobError
from broker.protocol import Stats
from broker.settings import BrokerSettings
from engine.metrics import Metrics
from gateway import audio
from gateway.api import (
    AUDIO_TYPES,
    BINARY,
    EXCEPTION_HANDLERS,
    AudioChunkEvent,
    DoneEvent,
    ErrorBody,
    Health,
    ModelCard,
    ModelList,
    OpenAIVoice,
    OpenAIVoices,
    SpeechDelta,
    SpeechDone,
    SpeechEvents,
    StreamEvents,
    complete_schema,
    errors,
    job_error_body,
    sse_schema,
)
from gateway.jobs import Services, Svc, count_chunk, end_tally, open_job, serving, watch
from gateway.requests import OPENAI_MODELS, BodyRequest, SpeechBody, SynthesizeBody, VoiceUpload, from_body, from_speech
from gateway.settings import GatewaySettings
from gateway.voices import Voice, VoiceStore
from gateway.ws import ws_synthesize

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
IGNORED_HEADER = "X-Chatterbox-Ignored"  # request fields accepted but without effect, comma-separated


def _sse(events: type, what: str) -> ResponseSpec:
    return ResponseSpec(events, media_type="text/event-stream", description=what, generate_examples=False)


def _audio(media_type: str, what: str) -> ResponseSpec:
    return ResponseSpec(bytes, media_type=media_type, description=what, generate_examples=False)


# Bodies are `JSONBody[...]` so Litestar asks `BodyRequest.json()` for them, which decodes forms too.
# Each SSE route's events: (the `event:` name, or None for plain `data:` events; the data's Struct).
SSE_EVENTS: dict[str, list[tuple[str | None, type[msgspec.Struct]]]] = {
    "/synthesize-stream": [("audio_chunk", AudioChunkEvent), ("done", DoneEvent), ("error", ErrorBody)],
    "/v1/audio/speech": [(None, SpeechDelta), (None, SpeechDone), ("error", ErrorBody)],
}
SYNTHESIS_ERRORS = errors(400, 404, 413, 422, 500, 503, 504, auth=True)

# -- routes ---------------------------------------------------------------------------------------------


@post(
    "/synthesize-stream", status_code=200, request_class=BodyRequest,
    responses={200: _sse(StreamEvents, "`audio_chunk` events (each data an AudioChunkEvent), then one `done` "
                         "(DoneEvent) or `error` (ErrorBody); `: keep-alive` comments while the job waits"),
               **SYNTHESIS_ERRORS},
)  # fmt: skip
async def synthesize_stream(data: JSONBody[SynthesizeBody], svc: Svc) -> ServerSentEvent:
    """The seed's contract: `audio_chunk` events (base64 WAV per chunk, metrics), then `done` or `error`."""
    chunks = await open_job(svc, from_body(data, svc.settings.max_text_chars), "synthesize-stream")
    return ServerSentEvent(sse_events(svc, chunks), headers=SSE_HEADERS)


def _event(kind: str, data: msgspec.Struct, n: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=kind, data=msgspec.json.encode(data).decode(), id=str(n))


async def sse_events(svc: Services, chunks: AsyncIterator[Chunk]) -> AsyncIterator[ServerSentEventMessage]:
    started, tally = time.monotonic(), Metrics()
    try:
        with serving(svc):
            async for chunk in watch(chunks, every=svc.settings.keepalive_seconds):
                if chunk is None:
                    # A comment line alone: with `data:` (Litestar's default, "") it would dispatch an
                    # empty `message` event, which EventSource and httpx-sse clients then fail to parse.
                    yield ServerSentEventMessage(comment="keep-alive", data=None)
                    continue
                metrics = count_chunk(svc, tally, chunk, started)
                event = AudioChunkEvent(
                    chunk_id=tally.chunks, audio_chunk=audio.wav_base64(chunk.pcm), sample_rate=chunk.sample_rate,
                    metrics=metrics,
                )  # fmt: skip
                yield _event("audio_chunk", event, tally.chunks)
        end_tally(svc, tally, started)
        yield _event("done", DoneEvent(message="Streaming complete", total_chunks=tally.chunks), tally.chunks + 1)
    except JobError as exc:
        yield _event("error", job_error_body(exc), tally.chunks + 1)


@post(
    "/synthesize", status_code=200, request_class=BodyRequest,
    responses={200: _audio("audio/wav", "the whole utterance, 16-bit mono WAV at 24 kHz"), **SYNTHESIS_ERRORS},
)  # fmt: skip
async def synthesize(data: JSONBody[SynthesizeBody], svc: Svc) -> Response[bytes]:
    """Regular synthesis: the whole utterance as one WAV."""
    chunks = await open_job(svc, from_body(data, svc.settings.max_text_chars), "synthesize", regular=True)
    pcm, first = await collect(svc, chunks)
    headers = {"X-First-Chunk-Latency": f"{first:.4f}"} if first is not None else {}
    return Response(audio.encode(pcm, "wav"), media_type="audio/wav", headers=headers)


async def collect(svc: Services, chunks: AsyncIterator[Chunk]) -> tuple[np.ndarray, float | None]:
    started, tally, parts = time.monotonic(), Metrics(), []
    with serving(svc):
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                tally.add_audio(len(chunk.pcm), chunk.sample_rate, time.monotonic() - started)
                parts.append(chunk.pcm)
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), tally.first_chunk_latency


@post(
    "/v1/audio/speech", status_code=200, request_class=BodyRequest,
    responses={200: _sse(SpeechEvents, "audio in `response_format` (the audio media types), or with "
                         "`stream_format: sse` SpeechEvents"), **SYNTHESIS_ERRORS},
)  # fmt: skip
async def openai_speech(data: JSONBody[SpeechBody], svc: Svc) -> Response[bytes] | Stream | ServerSentEvent:
    """OpenAI-compatible speech. `stream_format: audio` streams pcm/wav bytes as produced (other formats
    are encoded once at the end); `sse` sends `speech.audio.delta` events of base64 PCM16.
    Chatterbox's own parameters (exaggeration, cfg_weight, seed, max_new_tokens, ...) may ride along
    (the SDK's `extra_body`)."""
    chunks = await open_job(svc, from_speech(data, svc.settings.max_text_chars), "v1/audio/speech")
    fmt = data.response_format
    # Chatterbox has no voice instructions (gpt-4o-mini-tts's style prompt): taken, not used, and said so.
    headers = {IGNORED_HEADER: "instructions"} if data.instructions else {}
    if data.stream_format == "sse":
        return ServerSentEvent(openai_sse(svc, chunks), headers=SSE_HEADERS | headers)
    if fmt in ("pcm", "wav"):
        return Stream(audio_bytes(svc, chunks, fmt), media_type=audio.media_type(fmt), headers=headers)
    pcm, _ = await collect(svc, chunks)
    return Response(audio.encode(pcm, fmt), media_type=audio.media_type(fmt), headers=headers)


async def audio_bytes(svc: Services, chunks: AsyncIterator[Chunk], fmt: str) -> AsyncIterator[bytes]:
    """PCM16 as produced; for wav, first a streaming header (sizes unknown, so set to the maximum)."""
    if fmt == "wav":
        yield audio.streaming_wav_header()
    try:
        with serving(svc):
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield audio.pcm16(chunk.pcm)
    except JobError as exc:
        # Headers are gone; ending the body early is all HTTP allows. The log says why.
        log.warning("speech stream failed mid-way: %s", exc)


async def openai_sse(svc: Services, chunks: AsyncIterator[Chunk]) -> AsyncIterator[ServerSentEventMessage]:
    def message(data: msgspec.Struct, event: str | None = None) -> ServerSentEventMessage:
        return ServerSentEventMessage(data=msgspec.json.encode(data).decode(), event=event)

    try:
        with serving(svc):
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield message(SpeechDelta(audio=base64.b64encode(audio.pcm16(chunk.pcm)).decode()))
        yield message(SpeechDone())
    except JobError as exc:
        yield message(job_error_body(exc), "error")


@get("/v1/models", responses=errors(auth=True))
async def openai_models() -> ModelList:
    return ModelList(data=[ModelCard(id=m) for m in OPENAI_MODELS])


@get("/v1/audio/voices", responses=errors(auth=True))
async def openai_voices(svc: Svc) -> OpenAIVoices:
    stored = [OpenAIVoice(voice_id=v.id, name=v.name) for v in svc.voices.list()]
    return OpenAIVoices(voices=[OpenAIVoice(voice_id="default", name="default"), *stored])


@post("/voices", status_code=201, request_class=BodyRequest, responses=errors(400, 413, 422, auth=True))
async def add_voice(data: JSONBody[VoiceUpload], svc: Svc) -> Voice:
    """Store a reference voice (multipart `name`, `file`): it must decode, last 1–60 s, be at most 20 MB."""
    return await asyncio.to_thread(svc.voices.add, data.name, data.file)


@get("/voices", responses=errors(auth=True))
async def list_voices(svc: Svc) -> list[Voice]:
    return svc.voices.list()


@delete("/voices/{voice_id:str}", status_code=200, responses=errors(404, auth=True))
async def delete_voice(voice_id: FromPath[str], svc: Svc) -> Voice:
    return svc.voices.delete(voice_id)


@get("/health", responses={503: ResponseSpec(Health, description="no slot is live, or no broker answers")})
async def health(svc: Svc) -> Response[Health]:
    """Open even with an API key, for load balancers: 200 while some slot is live."""
    try:
        stats = await svc.client.stats(timeout=2.0)
    except JobError as exc:
        error = exc.message
        down = Health(status="unavailable", live_slots=0, slots=[], weights="unknown", streaming=True, error=error)
        return Response(down, status_code=503)
    live = [s for s in stats.slots if s.live]
    body = Health(
        status="ok" if live else "unavailable", live_slots=len(live), slots=[s.name for s in live],
        weights=live[0].weights if live else "unknown", streaming=True,
    )  # fmt: skip
    return Response(body, status_code=200 if live else 503)


@get("/stats", responses=errors(503, 504, auth=True))
async def stats(svc: Svc) -> Stats:
    return await svc.client.stats()


@get("/metrics", media_type="text/plain; version=0.0.4", responses=errors(auth=True))
async def metrics(svc: Svc) -> bytes:
    with contextlib.suppress(JobError):
        s = await svc.client.stats(timeout=2.0)
        svc.metrics.queue_depth.set(s.queue_depth)
        svc.metrics.live_slots.set(sum(x.live for x in s.slots))
    return svc.metrics.render()


# -- app ----------------------------------------------------------------------------------------------


def api_key_guard(settings: GatewaySettings):
    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        key = settings.api_key
        if not key or connection.url.path == "/health":
            return
        auth = connection.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else connection.headers.get("x-api-key", "")
        if not given and connection.scope["type"] == "websocket":
            # Browsers cannot set headers on a WebSocket handshake.
            given = connection.query_params.get("api_key", "")
        if given != key:
            raise NotAuthorizedException("missing or wrong API key (Authorization: Bearer KEY or X-API-Key: KEY)")

    return guard


def _allow(methods: str):
    async def answer() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": methods})

    return answer


def options_handlers(handlers: list[Any]) -> list[HTTPRouteHandler]:
    """An OPTIONS handler for each path served by several handlers (`/voices`: GET and POST), registered before
    them: Litestar's own answers with the Allow header of the first handler registered alone."""
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            for path in handler.paths:
                methods.setdefault(path, set()).update(handler.http_methods)
    out = []
    for path, allowed in methods.items():
        if len(allowed) > 1:
            answer = _allow(", ".join(sorted(allowed | {"OPTIONS"})))
            out.append(route(path, http_method="OPTIONS", include_in_schema=False, name=f"options:{path}")(answer))
    return out


def create_app(settings: GatewaySettings | None = None, broker: BrokerSettings | None = None) -> Litestar:
    settings = settings or GatewaySettings.from_env()
    broker = broker or BrokerSettings.from_env()
    holder: dict[str, Services] = {}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = AsyncClient(broker)
        await client.start(timeout=30.0)
        voices = VoiceStore(settings.voices_dir(), settings.voice)
        holder["svc"] = Services(settings, client, voices)
        try:
            yield
        finally:
            await client.close()

    def services() -> Services:
        return holder["svc"]

    handlers: list[Any] = [
        synthesize_stream, synthesize, openai_speech, openai_models, openai_voices, add_voice, list_voices,
        delete_voice, health, stats, metrics, ws_synthesize,
    ]  # fmt: skip
    handlers = [*options_handlers(handlers), *handlers]
    frontend = Path(settings.frontend_dir)
    if (frontend / "index.html").is_file():
        handlers.append(create_static_files_router(path="/", directories=[frontend], html_mode=True))
    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={"svc": Provide(services, sync_to_thread=False)},
        guards=[api_key_guard(settings)],
        cors_config=CORSConfig(allow_origins=settings.origins()) if settings.origins() else None,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Chatterbox streaming TTS", version="0.1.0"),
    )
    openapi = app.openapi_schema  # built once here, then completed: /schema serves this object
    complete_schema(openapi, settings.max_text_chars)
    for path, events in SSE_EVENTS.items():
        ok = openapi.paths[path].post.responses["200"]  # type: ignore[index, union-attr]
        ok.content["text/event-stream"].schema = sse_schema(events)  # type: ignore[union-attr, index]
    speech = openapi.paths["/v1/audio/speech"].post.responses["200"]  # type: ignore[index, union-attr]
    audio_types = dict.fromkeys(AUDIO_TYPES, OpenAPIMediaType(schema=BINARY))
    speech.content = {**audio_types, **(speech.content or {})}  # type: ignore[union-attr]
    return app
