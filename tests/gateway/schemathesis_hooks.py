"""Schemathesis hooks for tests/gateway/test_schema.py (loaded through SCHEMATHESIS_HOOKS).

The schema can say that `audio_prompt` and `file` are files, not that they must decode as 1–60 s of audio, nor
that a voice name must be new: generated data would be refused for reasons the schema cannot state. So every
upload of a positive case becomes a real 1.5 s tone, and every valid voice name a new one.
"""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import schemathesis
import soundfile as sf
from schemathesis.generation import GenerationMode
from schemathesis.transport.serialization import Binary  # how the coverage phase hands out file contents

from gateway.voices import NAME

UPLOADS = ("audio_prompt", "file")
_names = itertools.count()


def _tone() -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(24000 * 1.5)) / 24000
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 220 * t), 24000, format="WAV")
    return buf.getvalue()


TONE = _tone()


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _negative(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.NEGATIVE


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if not isinstance(body, dict) or _negative(case):  # a negative case keeps what makes it negative
        return
    for key in UPLOADS:
        value = body.get(key)
        if isinstance(value, Binary):
            body[key] = Binary(TONE)
        elif isinstance(value, bytes):
            body[key] = TONE
    name = body.get("name")
    if case.path == "/voices" and isinstance(name, str) and NAME.fullmatch(name):
        body["name"] = f"{name[:50]}-{next(_names)}"  # still valid: 64 characters at most, same first one


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Excluded: negative_data_rejection on form bodies. Form values are text on the wire, so a value of the wrong
    type often serializes to a valid one's text (the string "0" for a seed, "" for a field left out), which the
    server rightly accepts; JSON bodies keep the check."""
    form = (case.media_type or "").split(";")[0] in FORM_TYPES
    return not (form and "negative_data_rejection" in type(failure).checks)
