"""Audio containers for responses, written by libsndfile (through soundfile), never by hand."""

from __future__ import annotations

import base64
import io

import numpy as np
import soundfile as sf

from engine.audio import SAMPLE_RATE
from engine.errors import InvalidInput

# response_format → (libsndfile format, subtype, media type)
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
}
PCM_MEDIA_TYPE = "audio/pcm"  # raw 16-bit little-endian mono at 24 kHz


def pcm16(pcm: np.ndarray) -> bytes:
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def encode(pcm: np.ndarray, fmt: str) -> bytes:
    if fmt == "pcm":
        return pcm16(pcm)
    try:
        container, subtype, _ = FORMATS[fmt]
    except KeyError:
        raise InvalidInput("response_format", f"must be one of wav, pcm, mp3, opus, flac, not {fmt!r}") from None
    buf = io.BytesIO()
    sf.write(buf, np.asarray(pcm, dtype=np.float32), SAMPLE_RATE, format=container, subtype=subtype)
    return buf.getvalue()


def media_type(fmt: str) -> str:
    return PCM_MEDIA_TYPE if fmt == "pcm" else FORMATS[fmt][2]


def wav_base64(pcm: np.ndarray) -> str:
    """One complete 16-bit mono WAV file, base64: what the seed's `audio_chunk` event carries."""
    return base64.b64encode(encode(pcm, "wav")).decode("ascii")


def streaming_wav_header() -> bytes:
    """A WAV header for a stream of unknown length: libsndfile writes it, then the two size fields are
    set to the maximum, as streaming WAV producers (and OpenAI's API) do."""
    header = bytearray(encode(np.zeros(0, np.float32), "wav"))
    header[4:8] = (0xFFFFFFFF).to_bytes(4, "little")
    header[-4:] = (0xFFFFFFFF).to_bytes(4, "little")
    return bytes(header)
