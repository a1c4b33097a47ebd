"""The HTTP contract's response side: every response body as a Struct, one error shape for every refusal, and
the few things the OpenAPI schema cannot learn from the handlers' types (form encodings, audio media types,
the configured text limit)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Literal

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIType, Reference, RequestBody, Schema

from broker.client import JobError
from broker.protocol import ErrorCode
from engine.errors import InvalidInput
from engine.metrics import Weights
from gateway.requests import BODIES, FORM_BOOLEANS, FORM_TYPES, Text, struct_fields, upload_fields
from gateway.voices import VoiceNotFound

log = logging.getLogger(__name__)


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every 4xx/5xx body (and the SSE `error` event's data)."""

    error: str  # for people
    code: ErrorCode  # for programs
    field: str | None = None  # the request field at fault, if one is
    reason: str | None = None  # what is wrong with it


class ChunkMetrics(msgspec.Struct, kw_only=True):
    """The seed's per-chunk metrics, plus where the chunk came from."""

    first_chunk_latency: float | None
    total_latency: float
    rtf: float | None
    total_audio_duration: float
    chunks_generated: int
    weights: Weights
    slot: str
    job: str
    tokens_generated: int  # raw T3 samples so far
    valid_tokens: int  # of which speech tokens (random weights: far from all)
    # CLOCK_MONOTONIC seconds from the workers: on the same host a client can tell how long the chunk spent in
    # T3, in S3Gen, and in transit after vocoding (broker + gateway + HTTP).
    t3_span: tuple[float, float]
    s3gen_span: tuple[float, float]


class AudioChunkEvent(msgspec.Struct, kw_only=True):
    """SSE `event: audio_chunk`."""

    chunk_id: int
    audio_chunk: str  # base64 of one complete 16-bit mono WAV
    sample_rate: int
    metrics: ChunkMetrics


class DoneEvent(msgspec.Struct, kw_only=True):
    """SSE `event: done`."""

    message: str
    total_chunks: int


class StreamEvents(msgspec.Struct, kw_only=True):
    """Not sent as such: the data of each kind of event of `POST /synthesize-stream`, for the schema."""

    audio_chunk: AudioChunkEvent
    done: DoneEvent
    error: ErrorBody


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class SpeechDelta(msgspec.Struct, kw_only=True):
    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str  # base64 PCM16 LE, 24 kHz mono


class SpeechDone(msgspec.Struct, kw_only=True):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: Usage = msgspec.field(default_factory=Usage)


class SpeechEvents(msgspec.Struct, kw_only=True):
    """Not sent as such: the data of each event of `POST /v1/audio/speech` with `stream_format: sse`."""

    delta: SpeechDelta
    done: SpeechDone
    error: ErrorBody


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: Literal["ok", "unavailable"]
    live_slots: int
    slots: list[str]
    weights: Weights | Literal["unknown"]  # unknown while no slot is live
    streaming: bool  # always true: this server streams (the seed's clients look for it)
    error: str | None = None  # why, when the broker could not be asked


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "resemble-ai"


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIVoice(msgspec.Struct, kw_only=True):
    voice_id: str
    name: str


class OpenAIVoices(msgspec.Struct, kw_only=True):
    voices: list[OpenAIVoice]


# -- errors ----------------------------------------------------------------------------------------------


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> Response[ErrorBody]:
    return Response(body, status_code=status, headers=headers or {}, media_type="application/json")


def invalid_input_body(exc: InvalidInput) -> ErrorBody:
    return ErrorBody(error=str(exc), code=ErrorCode.INVALID_INPUT, field=exc.field, reason=exc.reason)


def job_error_body(exc: JobError) -> ErrorBody:
    return ErrorBody(error=exc.message, code=exc.code, field=exc.field)


def on_invalid_input(_: Request, exc: InvalidInput) -> Response[ErrorBody]:
    return error_response(ErrorCode.INVALID_INPUT.status, invalid_input_body(exc))


def on_job_error(_: Request, exc: JobError) -> Response[ErrorBody]:
    retry = {"Retry-After": "1"} if exc.code is ErrorCode.BUSY else None
    return error_response(exc.code.status, job_error_body(exc), retry)


def on_voice_not_found(_: Request, exc: VoiceNotFound) -> Response[ErrorBody]:
    reason = "no stored voice has this name or id"
    body = ErrorBody(error=f"unknown voice {exc.args[0]!r}", code=ErrorCode.NOT_FOUND, field="voice", reason=reason)
    return error_response(ErrorCode.NOT_FOUND.status, body)


def on_validation(request: Request, exc: ValidationException) -> Response[ErrorBody]:
    """Litestar's own validation (path and query parameters, a body missing whole): 422 naming the field, from
    the structured `extra` Litestar attaches (`[{"key", "message", "source"}]`)."""
    errors = exc.extra if isinstance(exc.extra, list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    field, reason = first.get("key") or "body", str(first.get("message") or exc.detail)
    if field == "data":  # no body at all: name the body's first required field
        data = request.route_handler.parsed_fn_signature.parameters.get("data")
        required = [n for n, f in struct_fields(data.annotation).items() if f.required] if data else []
        field, reason = (required[0], "is required") if required else ("body", "is required")
    return on_invalid_input(request, InvalidInput(field, reason))


# Litestar's own refusals that name no field of ours: the field at fault, and the code by status (other 4xx:
# invalid_input, 5xx: internal).
_HTTP_FIELDS = {401: "authorization", 405: "method", 413: "body"}
_HTTP_CODES = {
    code.status: code
    for code in (ErrorCode.NOT_FOUND, ErrorCode.UNAUTHORIZED, ErrorCode.METHOD_NOT_ALLOWED, ErrorCode.PAYLOAD_TOO_LARGE)
}


def on_http_exception(_: Request, exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    code = _HTTP_CODES.get(status) or (ErrorCode.INVALID_INPUT if status < 500 else ErrorCode.INTERNAL)
    reason = exc.detail
    if isinstance(exc, NotAuthorizedException):
        reason = "missing or wrong API key (Authorization: Bearer KEY or X-API-Key: KEY)"
    field = _HTTP_FIELDS.get(status)
    body = ErrorBody(error=f"{field}: {reason}" if field else reason, code=code, field=field, reason=reason)
    return error_response(status, body, exc.headers)


def on_exception(request: Request, exc: Exception) -> Response[ErrorBody]:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, ErrorBody(error="internal server error", code=ErrorCode.INTERNAL))


EXCEPTION_HANDLERS = {
    InvalidInput: on_invalid_input,
    JobError: on_job_error,
    VoiceNotFound: on_voice_not_found,
    ValidationException: on_validation,
    HTTPException: on_http_exception,
    Exception: on_exception,
}


def errors(*statuses: int, auth: bool = False) -> dict[int, ResponseSpec]:
    """The `responses=` of a route: the error statuses it can answer, each with the one error shape."""
    what = {
        400: "a malformed body (e.g. a broken multipart stream)",
        401: "CHATTERBOX_API_KEY is set and the request has no or another key",
        404: "an unknown voice",
        413: "the body is over CHATTERBOX_GATEWAY_MAX_BODY_BYTES",
        422: "a field is unusable: `field` names it, `reason` says why",
        500: "the job failed on the model side, or the gateway did",
        503: "every slot busy and the queue full (`busy`, with Retry-After), or the broker unreachable",
        504: "no slot became free in time",
    }
    codes = (*statuses, 401) if auth else statuses
    return {s: ResponseSpec(ErrorBody, description=what[s], generate_examples=False) for s in sorted(set(codes))}


# -- the schema, completed -------------------------------------------------------------------------------

AUDIO_TYPES = ("audio/wav", "audio/pcm", "audio/mpeg", "audio/ogg", "audio/flac")
BINARY = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]


def complete_schema(openapi: OpenAPI, max_text_chars: int) -> None:
    """What the types cannot say: a body route takes form encodings too (numbers as text, booleans as
    FORM_BOOLEANS), an upload only in a multipart form (a body with a required file is multipart only), and
    text is limited by the server's setting."""
    schemas = openapi.components.schemas
    for body_type in BODIES:
        schema = schemas.get(body_type.__name__)
        for name, field in struct_fields(body_type).items():
            if schema is not None and field.type_hint == Text and isinstance(prop := schema.properties[name], Schema):
                prop.max_length = max_text_chars
    contents: dict[str, dict[str, OpenAPIMediaType]] = {}  # per body type: routes may share one
    for item in (openapi.paths or {}).values():
        body = item.post.request_body if item.post is not None else None
        if not isinstance(body, RequestBody):
            continue
        ref = body.content["application/json"].schema
        if isinstance(ref, Reference):
            name = ref.ref.rsplit("/", 1)[-1]
            if name not in contents:
                contents[name] = _encodings(schemas, name, next(t for t in BODIES if t.__name__ == name))
            body.content = contents[name]


def _encodings(schemas: dict[str, Schema], name: str, body_type: type) -> dict[str, OpenAPIMediaType]:
    uploads, plain = upload_fields(body_type), schemas[name]
    media = functools.partial(_register, schemas, name)
    if any(struct_fields(body_type)[u].required for u in uploads):
        return {"multipart/form-data": media("", form_schema(plain, uploads, files=True))}
    json_body = media("", form_schema(plain, uploads, files=False, form=False))
    form = media("Form", form_schema(plain, uploads, files=False))
    multipart = media("Multipart", form_schema(plain, uploads, files=True)) if uploads else form
    return {"application/json": json_body, FORM_TYPES[0]: form, FORM_TYPES[1]: multipart}


def sse_schema(events: list[tuple[str | None, type[msgspec.Struct]]]) -> Schema:
    """One SSE event, as schemathesis and readers take a text/event-stream schema: an object of `event` (absent
    for None: a plain `data:` event), `id` and `data`, the JSON text of the event kind's Struct."""
    kinds = []
    for event, data in events:
        ref = Reference(ref=f"#/components/schemas/{data.__name__}")
        payload = Schema(type=OpenAPIType.STRING, content_media_type="application/json", content_schema=ref)
        name = Schema(const=event) if event is not None else Schema(const="message")
        props: dict[str, Schema | Reference] = {"event": name, "id": Schema(type=OpenAPIType.STRING), "data": payload}
        required = ["data", "event"] if event is not None else ["data"]
        kinds.append(Schema(type=OpenAPIType.OBJECT, properties=props, required=required))
    return Schema(any_of=kinds)  # any: kinds without an event name differ only in their data's schema


def _register(schemas: dict[str, Schema], name: str, suffix: str, schema: Schema) -> OpenAPIMediaType:
    schemas[name + suffix] = schema
    return OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{name}{suffix}"))


def form_schema(schema: Schema, uploads: set[str], files: bool, form: bool = True) -> Schema:
    """The body's schema for one encoding: uploads as files (or left out where none can be sent), and in a form
    booleans also as FORM_BOOLEANS text (any case)."""
    words = "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in w) for w in FORM_BOOLEANS)
    text_bool = Schema(type=OpenAPIType.STRING, pattern=f"^({words})$")
    props: dict[str, Schema | Reference] = {}
    for key, prop in (schema.properties or {}).items():
        if key in uploads:
            if not files:
                continue
            prop = BINARY
        elif form and isinstance(prop, Schema) and prop.type == OpenAPIType.BOOLEAN:
            plain = dataclasses.replace(prop, default=None, description=None)
            prop = Schema(one_of=[plain, text_bool], default=prop.default, description=prop.description)
        if form and key not in (schema.required or ()) and isinstance(prop, Schema) and prop.type != OpenAPIType.STRING:
            # An empty form value means "not given" (the default), whatever the field's type.
            empty = Schema(type=OpenAPIType.STRING, max_length=0)
            inner = dataclasses.replace(prop, default=None, description=None)
            prop = Schema(any_of=[inner, empty], default=prop.default, description=prop.description)
        props[key] = prop
    title = schema.title or ""
    if form:
        title = f"{title} ({'multipart' if files else 'form'})".strip()
    return dataclasses.replace(schema, properties=props, title=title or None)
