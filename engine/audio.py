"""Audio facts and reference decoding, without torch: every process may import this (the gateway validates
uploads with it)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from engine.errors import InvalidInput
from engine.settings import VoiceLimits

# S3Gen's output rate, and so every PCM stream's: one definition for every process.
SAMPLE_RATE = 24000
FIELD = "audio_prompt"


def decode_reference(data: bytes, limits: VoiceLimits) -> np.ndarray:
    """Decode wav/flac/ogg/mp3 bytes to mono float32 at 24 kHz, or raise InvalidInput saying why not."""
    if not data:
        raise InvalidInput(FIELD, "is empty")
    if len(data) > limits.max_bytes:
        raise InvalidInput(FIELD, f"is {len(data)} bytes; the maximum is {limits.max_bytes}")
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable data
        # libsndfile's own reason, not the exception's text: that names a Python object (`<_io.BytesIO ...>`).
        detail = getattr(exc, "error_string", None)
        reason = "could not be decoded as wav, flac, ogg or mp3" + (f": {detail}" if detail else "")
        raise InvalidInput(FIELD, reason) from exc
    wav = wav.mean(axis=1)
    seconds = len(wav) / sr
    if seconds < limits.min_seconds:
        raise InvalidInput(FIELD, f"is {seconds:.2f} s long; at least {limits.min_seconds:g} s is needed")
    if seconds > limits.max_seconds:
        raise InvalidInput(FIELD, f"is {seconds:.1f} s long; the maximum is {limits.max_seconds:g} s")
    if not np.isfinite(wav).all() or float(np.abs(wav).max()) < 1e-4:
        raise InvalidInput(FIELD, "is silent or not finite")
    if sr != SAMPLE_RATE:
        import librosa  # heavy (numba); only a reference at another rate needs it

        wav = librosa.resample(wav, orig_sr=sr, target_sr=SAMPLE_RATE)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)
