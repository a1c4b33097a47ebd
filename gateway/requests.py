"""Turning form or JSON request bodies into a validated synthesis request."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.datastructures import UploadFile

from engine.errors import InvalidInput
from engine.params import SynthesisParams
from engine.text import check_text

PARAM_FIELDS = set(SynthesisParams.__struct_fields__)


class SynthesisRequest(msgspec.Struct, kw_only=True):
    text: str
    params: SynthesisParams
    voice: str | None = None
    reference: bytes | None = None


async def read_fields(request: Request) -> dict[str, Any]:
    """Form (urlencoded or multipart) or JSON, as one dict; uploads become bytes."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except Exception:
            raise InvalidInput("body", "is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput("body", "must be a JSON object")
        return body
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            fields[key] = await value.read() if isinstance(value, UploadFile) else value
        return fields
    raise InvalidInput("content-type", "must be application/json, multipart/form-data or x-www-form-urlencoded")


def invalid_input(exc: msgspec.ValidationError, whole: str) -> InvalidInput:
    """msgspec says "Expected `float`, got `str` - at `$.temperature`": name the field, keep the reason."""
    message = str(exc)
    reason, _, where = message.partition(" - at ")
    field = where.strip("`").removeprefix("$.") if where.startswith("`$.") else whole
    if reason.startswith("Object missing required field `"):
        field, reason = reason.split("`")[1], "is required"
    return InvalidInput(field, reason)


def synthesis_request(fields: dict[str, Any], max_text_chars: int, text_field: str = "text") -> SynthesisRequest:
    try:
        text = check_text(fields.get(text_field), max_text_chars)
    except InvalidInput as exc:
        raise InvalidInput(text_field, exc.reason) from None
    raw = {k: v for k, v in fields.items() if k in PARAM_FIELDS and v not in (None, "")}
    try:
        params = msgspec.convert(raw, SynthesisParams, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid_input(exc, "params") from None
    params = params.validated()
    reference = fields.get("audio_prompt")
    if reference is not None and not isinstance(reference, bytes | bytearray):
        raise InvalidInput("audio_prompt", "must be an uploaded file")
    voice = fields.get("voice") or None
    if voice is not None and not isinstance(voice, str):
        raise InvalidInput("voice", "must be a voice name or id")
    return SynthesisRequest(text=text, params=params, voice=voice, reference=bytes(reference) if reference else None)
