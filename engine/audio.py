"""Reference audio checks and decoding, without torch: the gateway validates uploads with this too."""

from __future__ import annotations

import io

import librosa
import numpy as np
import soundfile as sf

from engine.errors import InvalidInput

FIELD = "audio_prompt"
S3GEN_SR = 24000


def decode_reference(data: bytes, *, min_seconds: float, max_seconds: float, max_bytes: int) -> np.ndarray:
    """Decode wav/flac/ogg/mp3 bytes to mono float32 at 24 kHz, or raise InvalidInput saying why not."""
    if not data:
        raise InvalidInput(FIELD, "is empty")
    if len(data) > max_bytes:
        raise InvalidInput(FIELD, f"is {len(data)} bytes; the maximum is {max_bytes}")
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable data
        raise InvalidInput(FIELD, f"could not be decoded as wav, flac, ogg or mp3 ({exc})") from exc
    wav = wav.mean(axis=1)
    seconds = len(wav) / sr
    if seconds < min_seconds:
        raise InvalidInput(FIELD, f"is {seconds:.2f} s long; at least {min_seconds:g} s is needed")
    if seconds > max_seconds:
        raise InvalidInput(FIELD, f"is {seconds:.1f} s long; the maximum is {max_seconds:g} s")
    if not np.isfinite(wav).all() or float(np.abs(wav).max()) < 1e-4:
        raise InvalidInput(FIELD, "is silent or not finite")
    if sr != S3GEN_SR:
        wav = librosa.resample(wav, orig_sr=sr, target_sr=S3GEN_SR)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)
