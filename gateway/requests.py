"""The typed request bodies, and how form (urlencoded or multipart) or JSON becomes one of them.

Each body is a msgspec Struct taken as a route's `data:` parameter, so the OpenAPI schema is generated from the
same types that decode the request. JSON is decoded strictly (a number is a number); form values are text on
the wire, so there numbers are parsed from their text and a boolean is one of `FORM_BOOLEANS` in any case.
Sampling ranges come from the engine's `RANGES` (documented in the schema) and are enforced by
`SynthesisParams.validated()`: one source of truth, one error message.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request
from litestar.datastructures import UploadFile
from litestar.types import Empty

from engine.errors import InvalidInput
from engine.params import RANGES, SynthesisParams
from engine.text import check_text
from gateway.voices import NAME

_DEFAULTS = SynthesisParams()
# What a form field may say for a boolean, compared case-insensitively.
FORM_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Python's str.split() whitespace (what check_text collapses), so the schema's "some non-space character" is
# exactly the server's; ECMA's \s differs (it lacks \x1c-\x1f and \x85).
_NON_SPACE = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _range(name: str, description: str = "") -> msgspec.Meta:
    """The engine's range as schema only: `validated()` enforces it, with its own message."""
    low, high = RANGES[name]
    extra = {"minimum": low, "maximum": high}
    return msgspec.Meta(extra_json_schema={"extra": extra, **({"description": description} if description else {})})


Text = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={
            "description": "the text to speak; whitespace runs count as one space; at most the server's "
            "CHATTERBOX_MAX_TEXT_CHARS characters (3000 by default)",
            "extra": {"pattern": _NON_SPACE},
        }
    ),
]


class ParamFields(msgspec.Struct, kw_only=True):
    """The engine's per-request parameters (`SynthesisParams`), with its defaults and ranges."""

    exaggeration: Annotated[float, _range("exaggeration")] = _DEFAULTS.exaggeration
    temperature: Annotated[float, _range("temperature")] = _DEFAULTS.temperature
    cfg_weight: Annotated[float, _range("cfg_weight")] = _DEFAULTS.cfg_weight
    repetition_penalty: Annotated[float, _range("repetition_penalty")] = _DEFAULTS.repetition_penalty
    min_p: Annotated[float, _range("min_p")] = _DEFAULTS.min_p
    top_p: Annotated[float, _range("top_p")] = _DEFAULTS.top_p
    chunk_size: Annotated[int, _range("chunk_size", "speech tokens per chunk once grown")] = _DEFAULTS.chunk_size
    first_chunk_size: Annotated[int, _range("first_chunk_size", "capped at chunk_size")] | None = (
        _DEFAULTS.first_chunk_size
    )
    max_new_tokens: Annotated[int, _range("max_new_tokens")] | None = _DEFAULTS.max_new_tokens
    seed: Annotated[int, _range("seed")] | None = _DEFAULTS.seed
    ignore_stop: Annotated[
        bool,
        msgspec.Meta(
            description="generate exactly max_new_tokens; in a form: true, false, 1 or 0, in any case",
        ),
    ] = _DEFAULTS.ignore_stop

    def params(self) -> SynthesisParams:
        """The engine's parameters, range-checked by the engine (InvalidInput naming the field)."""
        values = {name: getattr(self, name) for name in SynthesisParams.__struct_fields__}
        return SynthesisParams(**values).validated()


class SynthesizeBody(ParamFields, kw_only=True):
    """`POST /synthesize-stream` and `POST /synthesize`. A multipart form may add an `audio_prompt` file."""

    text: Text
    voice: Annotated[str, msgspec.Meta(description="a stored voice's name or id; default: built-in")] | None = None
    # Only from a multipart upload: a JSON body never carries it (refused in `decode`).
    audio_prompt: bytes | None = None


OPENAI_MODELS = ("chatterbox", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's dated snapshots (`tts-1-1106`, `gpt-4o-mini-tts-2025-12-15`) are aliases of their base names:
# clients pinned to one must work unchanged.
OpenAIModel = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^({'|'.join(re.escape(m) for m in OPENAI_MODELS)})(-\d{{4}}(-\d{{2}}-\d{{2}})?)?$",
        description=f"one of {', '.join(OPENAI_MODELS)}, or a dated snapshot of one such as tts-1-1106 "
        "(all mean Chatterbox)",
    ),
]
ResponseFormat = Literal["wav", "pcm", "mp3", "opus", "flac"]


class SpeechBody(ParamFields, kw_only=True):
    """`POST /v1/audio/speech`, OpenAI's fields; Chatterbox's own parameters may ride along."""

    model: OpenAIModel
    input: Text
    voice: Annotated[str, msgspec.Meta(description="OpenAI's names mean the built-in voice")] = "default"
    response_format: ResponseFormat = "mp3"
    speed: Annotated[
        float, msgspec.Meta(extra_json_schema={"description": "only 1.0: Chatterbox has no speed control",
                                               "extra": {"minimum": 1.0, "maximum": 1.0}})
    ] = 1.0  # fmt: skip
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = None


class VoiceUpload(msgspec.Struct, kw_only=True):
    """`POST /voices`, multipart."""

    # The pattern as schema only: VoiceStore.add enforces it, with its own message.
    name: Annotated[str, msgspec.Meta(extra_json_schema={"extra": {"pattern": NAME.pattern}})]
    file: bytes


BODIES: tuple[type[msgspec.Struct], ...] = (SynthesizeBody, SpeechBody, VoiceUpload)


class SynthesisRequest(msgspec.Struct, kw_only=True):
    """What a job is opened with: checked text, range-checked parameters, a voice."""

    text: str
    params: SynthesisParams
    voice: str | None = None
    reference: bytes | None = None


# -- decoding ---------------------------------------------------------------------------------------------


class BodyRequest(Request):
    """A Request whose body (JSON or form) decodes into the route's `data:` Struct, so one route serves every
    encoding; Litestar passes the decoded Struct on as is."""

    async def json(self) -> Any:
        if self._json is Empty:
            target = self.route_handler.parsed_fn_signature.parameters["data"].annotation
            self._json = await decode(self, target)
        return self._json


async def decode(request: Request, target: type[msgspec.Struct]) -> msgspec.Struct:
    content_type = request.content_type[0]
    if content_type == "application/json":
        try:
            raw = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            raise InvalidInput("body", "is not valid JSON") from None
        if not isinstance(raw, dict):
            raise InvalidInput("body", "must be a JSON object")
        for name in upload_fields(target):
            if name in raw:
                raise InvalidInput(name, "must be an uploaded file (multipart/form-data)")
        return convert(_integral(raw, target), target, strict=True)
    if content_type in FORM_TYPES:
        form = await request.form()
        return convert(await form_fields(form.multi_items(), target), target, strict=False)
    raise InvalidInput("content-type", "must be application/json, multipart/form-data or x-www-form-urlencoded")


async def form_fields(items: list[tuple[str, Any]], target: type[msgspec.Struct]) -> dict[str, Any]:
    """Form values as the Struct's fields: uploads as bytes (only where a file belongs), booleans from their
    text, and empty values dropped (an empty form field means "not given")."""
    info = struct_fields(target)
    uploads = upload_fields(target)
    fields: dict[str, Any] = {}
    for key, value in items:
        if key not in info:
            continue
        if key in uploads:
            if not isinstance(value, UploadFile):
                raise InvalidInput(key, "must be an uploaded file (multipart/form-data)")
            fields[key] = await value.read()
            continue
        if isinstance(value, UploadFile):
            raise InvalidInput(key, "must be a form value, not a file")
        if value == "":
            continue
        if _is_bool(info[key].type):
            if value.lower() not in FORM_BOOLEANS:
                raise InvalidInput(key, f"must be one of {', '.join(FORM_BOOLEANS)} (any case), got {value!r}")
            fields[key] = FORM_BOOLEANS[value.lower()]
            continue
        fields[key] = value
    return fields


def _integral(raw: dict[str, Any], target: type[msgspec.Struct]) -> dict[str, Any]:
    """JSON Schema counts 5.0 as an integer (msgspec's strict mode does not): take it as 5."""
    info = struct_fields(target)
    return {
        k: int(v) if isinstance(v, float) and v.is_integer() and k in info and _is_int(info[k].type) else v
        for k, v in raw.items()
    }


def convert(raw: dict[str, Any], target: type[msgspec.Struct], strict: bool) -> msgspec.Struct:
    """msgspec's conversion, failing as InvalidInput naming the field: a missing one "is required", a wrong one
    says what was expected. The field is found by converting each value alone, never from the error text."""
    info = struct_fields(target)
    for name, field in info.items():
        if field.required and name not in raw:
            raise InvalidInput(name, "is required")
    try:
        return msgspec.convert(raw, target, strict=strict)
    except msgspec.ValidationError as exc:
        for name, value in raw.items():
            if name in info:
                try:
                    msgspec.convert(value, info[name].type_hint, strict=strict)
                except msgspec.ValidationError as one:
                    allowed = _unwrap(info[name].type)
                    if isinstance(allowed, msgspec.inspect.LiteralType):  # msgspec names only the wrong value
                        raise InvalidInput(name, f"must be one of {', '.join(map(str, allowed.values))}") from None
                    if isinstance(allowed, msgspec.inspect.StrType) and allowed.pattern and _description(info[name]):
                        # A regex is no message for a user: the field's description says what it takes.
                        raise InvalidInput(name, f"must be {_description(info[name])}, not {value!r}") from None
                    raise InvalidInput(name, str(one)) from None
        raise InvalidInput("body", str(exc)) from None


class _Field(msgspec.Struct):
    required: bool
    type: msgspec.inspect.Type  # to tell booleans and files apart
    type_hint: Any  # to convert one value alone


@functools.cache
def struct_fields(target: type[msgspec.Struct]) -> dict[str, _Field]:
    info = msgspec.inspect.type_info(target)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = msgspec.structs.fields(target)
    return {f.encode_name: _Field(f.required, f.type, h.type) for f, h in zip(info.fields, hints, strict=True)}


def _unwrap(t: Any) -> Any:
    while True:
        if isinstance(t, msgspec.inspect.Metadata):
            t = t.type
        elif isinstance(t, msgspec.inspect.UnionType):
            rest = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
            if len(rest) != 1:
                return t
            t = rest[0]
        else:
            return t


def _description(field: _Field) -> str | None:
    t = field.type
    while isinstance(t, msgspec.inspect.Metadata):
        if t.extra_json_schema and t.extra_json_schema.get("description"):
            return t.extra_json_schema["description"]
        t = t.type
    return None


def _is_int(t: Any) -> bool:
    return isinstance(_unwrap(t), msgspec.inspect.IntType)


def _is_bool(t: Any) -> bool:
    return isinstance(_unwrap(t), msgspec.inspect.BoolType)


def upload_fields(target: type[msgspec.Struct]) -> set[str]:
    return {name for name, f in struct_fields(target).items() if isinstance(_unwrap(f.type), msgspec.inspect.BytesType)}


# -- into a job -------------------------------------------------------------------------------------------


def synthesis_request(
    body: ParamFields, text: str, voice: str | None, reference: bytes | None, max_text_chars: int, text_field: str
) -> SynthesisRequest:
    if len(text) > max_text_chars:  # as given, so the schema's maxLength is the limit (check_text counts collapsed)
        raise InvalidInput(text_field, f"is {len(text)} characters long; the maximum is {max_text_chars}")
    try:
        checked = check_text(text, max_text_chars)
    except InvalidInput as exc:
        raise InvalidInput(text_field, exc.reason) from None
    return SynthesisRequest(text=checked, params=body.params(), voice=voice or None, reference=reference or None)


def from_body(body: SynthesizeBody, max_text_chars: int) -> SynthesisRequest:
    return synthesis_request(body, body.text, body.voice, body.audio_prompt, max_text_chars, "text")


def from_speech(body: SpeechBody, max_text_chars: int) -> SynthesisRequest:
    if body.speed != 1.0:
        raise InvalidInput("speed", "only 1.0 is supported: Chatterbox has no speed control")
    return synthesis_request(body, body.input, body.voice, None, max_text_chars, "input")


def from_message(fields: dict[str, Any], max_text_chars: int) -> SynthesisRequest:
    """A WebSocket request (JSON already decoded): the same fields as `SynthesizeBody`, without a file."""
    if "audio_prompt" in fields:
        raise InvalidInput("audio_prompt", "cannot ride on a WebSocket message: store the voice and name it")
    return from_body(convert(fields, SynthesizeBody, strict=True), max_text_chars)  # type: ignore[arg-type]
