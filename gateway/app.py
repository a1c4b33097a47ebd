"""The Litestar app: SSE streaming, regular synthesis, OpenAI-compatible speech, voices, health, stats.

A lifespan owns the broker connection (the AsyncClient: its ZeroMQ context, sockets and receive
tasks); handlers reach it through `Services`, injected as a dependency. Every job is a broker job;
the gateway itself never touches a model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from litestar import Litestar, Request, Response, delete, get, post
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream
from litestar.static_files import create_static_files_router

from broker.client import AsyncClient, Chunk, JobError
from broker.protocol import ErrorCode
from broker.settings import BrokerSettings
from engine.errors import InvalidInput
from gateway import audio
from gateway.jobs import Services, Svc, chunk_metrics, open_job, serving, watch
from gateway.requests import PARAM_FIELDS, invalid_input, read_fields, synthesis_request
from gateway.settings import GatewaySettings
from gateway.voices import VoiceNotFound, VoiceStore
from gateway.ws import ws_synthesize

log = logging.getLogger(__name__)
OPENAI_MODELS = ("chatterbox", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers or {}, media_type="application/json")


def job_error_response(exc: JobError) -> Response:
    body: dict[str, Any] = {"error": exc.message, "code": exc.code}
    if exc.field:
        body["field"] = exc.field
    return error_response(exc.code.status, body, {"Retry-After": "1"} if exc.code is ErrorCode.BUSY else None)


def invalid_input_handler(_: Request, exc: InvalidInput) -> Response:
    return error_response(ErrorCode.INVALID_INPUT.status, {"error": str(exc), "field": exc.field, "reason": exc.reason})


def job_error_handler(_: Request, exc: JobError) -> Response:
    return job_error_response(exc)


def voice_not_found_handler(_: Request, exc: VoiceNotFound) -> Response:
    return error_response(ErrorCode.NOT_FOUND.status, {"error": f"unknown voice {exc.args[0]!r}", "field": "voice"})


# -- routes ---------------------------------------------------------------------------------------------


@post("/synthesize-stream", status_code=200)
async def synthesize_stream(request: Request, svc: Svc) -> ServerSentEvent:
    """The seed's contract: `audio_chunk` events (base64 WAV per chunk, metrics), then `done` or `error`."""
    req = synthesis_request(await read_fields(request), svc.settings.max_text_chars)
    chunks = await open_job(svc, req, "synthesize-stream")
    return ServerSentEvent(sse_events(svc, chunks), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def sse_events(svc: Services, chunks: AsyncIterator[Chunk]) -> AsyncIterator[ServerSentEventMessage]:
    started = time.monotonic()
    count, seconds, first = 0, 0.0, None
    try:
        with serving(svc):
            async for chunk in watch(chunks, every=svc.settings.keepalive_seconds):
                if chunk is None:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                count += 1
                seconds += len(chunk.pcm) / chunk.sample_rate
                if first is None and len(chunk.pcm):
                    first = time.monotonic() - started
                    svc.metrics.first_chunk.observe(first)
                data = {"chunk_id": count, "audio_chunk": audio.wav_base64(chunk.pcm), "sample_rate": chunk.sample_rate}
                data["metrics"] = chunk_metrics(chunk, started, first, seconds, count)
                yield ServerSentEventMessage(event="audio_chunk", data=json.dumps(data), id=str(count))
        if seconds:
            svc.metrics.rtf.observe((time.monotonic() - started) / seconds)
        done = {"message": "Streaming complete", "total_chunks": count}
        yield ServerSentEventMessage(event="done", data=json.dumps(done), id=str(count + 1))
    except JobError as exc:
        body = {"error": exc.message, "code": exc.code}
        yield ServerSentEventMessage(event="error", data=json.dumps(body), id=str(count + 1))


@post("/synthesize", status_code=200)
async def synthesize(request: Request, svc: Svc) -> Response:
    """Regular synthesis: the whole utterance as one WAV."""
    req = synthesis_request(await read_fields(request), svc.settings.max_text_chars)
    chunks = await open_job(svc, req, "synthesize", regular=True)
    pcm, first = await collect(svc, chunks)
    headers = {"X-First-Chunk-Latency": f"{first:.4f}"} if first is not None else {}
    return Response(audio.encode(pcm, "wav"), media_type="audio/wav", headers=headers)


async def collect(svc: Services, chunks: AsyncIterator[Chunk]) -> tuple[np.ndarray, float | None]:
    started, first, parts = time.monotonic(), None, []
    with serving(svc):
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if first is None and len(chunk.pcm):
                    first = time.monotonic() - started
                parts.append(chunk.pcm)
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), first


class SpeechRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    model: str
    input: str
    voice: str = "default"
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: str = "audio"
    instructions: str | None = None


@post("/v1/audio/speech", status_code=200)
async def openai_speech(request: Request, svc: Svc) -> Response | Stream | ServerSentEvent:
    """OpenAI-compatible speech. `stream_format: audio` streams pcm/wav bytes as produced (other formats
    are encoded once at the end); `sse` sends `speech.audio.delta` events of base64 PCM16.
    Chatterbox's own parameters (exaggeration, cfg_weight, seed, max_new_tokens, ...) may ride along as
    extra fields (the SDK's `extra_body`)."""
    try:
        raw = msgspec.json.decode(await request.body())
        body = msgspec.convert(raw, SpeechRequest)
    except msgspec.ValidationError as exc:
        raise invalid_input(exc, "body") from None
    except msgspec.DecodeError:
        raise InvalidInput("body", "is not valid JSON") from None
    if body.model not in OPENAI_MODELS:
        raise InvalidInput("model", f"must be one of {', '.join(OPENAI_MODELS)}")
    if body.speed != 1.0:
        raise InvalidInput("speed", "only 1.0 is supported: Chatterbox has no speed control")
    if body.stream_format not in ("audio", "sse"):
        raise InvalidInput("stream_format", "must be audio or sse")
    fmt = body.response_format
    if fmt not in ("pcm", *audio.FORMATS):
        raise InvalidInput("response_format", "must be one of wav, pcm, mp3, opus, flac")
    extra = {k: v for k, v in raw.items() if k in PARAM_FIELDS}
    fields = {"input": body.input, "voice": body.voice, **extra}
    req = synthesis_request(fields, svc.settings.max_text_chars, "input")
    chunks = await open_job(svc, req, "v1/audio/speech")
    if body.stream_format == "sse":
        return ServerSentEvent(openai_sse(svc, chunks))
    if fmt in ("pcm", "wav"):
        return Stream(audio_bytes(svc, chunks, fmt), media_type=audio.media_type(fmt))
    pcm, _ = await collect(svc, chunks)
    return Response(audio.encode(pcm, fmt), media_type=audio.media_type(fmt))


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
    try:
        with serving(svc):
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    delta = {"type": "speech.audio.delta", "audio": base64.b64encode(audio.pcm16(chunk.pcm)).decode()}
                    yield ServerSentEventMessage(data=json.dumps(delta))
        done = {"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}}
        yield ServerSentEventMessage(data=json.dumps(done))
    except JobError as exc:
        yield ServerSentEventMessage(event="error", data=json.dumps({"error": exc.message, "code": exc.code}))


@get("/v1/models")
async def openai_models() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "resemble-ai"} for m in OPENAI_MODELS]
    return {"object": "list", "data": data}


@get("/v1/audio/voices")
async def openai_voices(svc: Svc) -> dict[str, Any]:
    stored = [{"voice_id": v.id, "name": v.name} for v in svc.voices.list()]
    return {"voices": [{"voice_id": "default", "name": "default"}, *stored]}


@post("/voices", status_code=201)
async def add_voice(request: Request, svc: Svc) -> dict[str, Any]:
    fields = await read_fields(request)
    data = fields.get("file")
    if not isinstance(data, bytes):
        raise InvalidInput("file", "must be an uploaded audio file (multipart)")
    voice = await asyncio.to_thread(svc.voices.add, fields.get("name", ""), data)
    return msgspec.to_builtins(voice)


@get("/voices")
async def list_voices(svc: Svc) -> list[dict[str, Any]]:
    return msgspec.to_builtins(svc.voices.list())


@delete("/voices/{voice_id:str}", status_code=200)
async def delete_voice(voice_id: FromPath[str], svc: Svc) -> dict[str, Any]:
    return msgspec.to_builtins(svc.voices.delete(voice_id))


@get("/health")
async def health(svc: Svc) -> Response:
    try:
        stats = await svc.client.stats(timeout=2.0)
    except JobError as exc:
        return error_response(503, {"status": "unavailable", "error": exc.message, "streaming": True})
    live = [s for s in stats.slots if s.live]
    weights = live[0].weights if live else "unknown"
    body = {
        "status": "ok" if live else "unavailable",
        "live_slots": len(live),
        "slots": [s.name for s in live],
        "weights": weights,
        "streaming": True,
    }
    return Response(body, status_code=200 if live else 503)


@get("/stats")
async def stats(svc: Svc) -> dict[str, Any]:
    return msgspec.to_builtins(await svc.client.stats())


@get("/metrics", media_type="text/plain; version=0.0.4")
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
    frontend = Path(settings.frontend_dir)
    if (frontend / "index.html").is_file():
        handlers.append(create_static_files_router(path="/", directories=[frontend], html_mode=True))
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={"svc": Provide(services, sync_to_thread=False)},
        guards=[api_key_guard(settings)],
        cors_config=CORSConfig(allow_origins=settings.origins()) if settings.origins() else None,
        exception_handlers={InvalidInput: invalid_input_handler, JobError: job_error_handler,
                            VoiceNotFound: voice_not_found_handler},
        request_max_body_size=settings.max_body_bytes,
    )  # fmt: skip
