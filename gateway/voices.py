"""Uploaded reference voices, stored on disk so they survive restarts.

Layout: `<data_dir>/voices/<id>.audio` holds the bytes as uploaded and `<id>.json` the record. The id
is the SHA-256 prefix of the bytes, so uploading the same file twice gives the same voice.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

import msgspec

from engine.audio import SAMPLE_RATE, decode_reference
from engine.errors import InvalidInput
from engine.settings import VoiceLimits

# Anchored for JSON Schema (the OpenAPI pattern); fullmatch here, since Python's $ also matches before a final \n.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class Voice(msgspec.Struct, kw_only=True):
    id: str
    name: str
    seconds: float
    bytes: int
    created: float


class VoiceNotFound(LookupError):
    pass


class VoiceStore:
    def __init__(self, root: Path, limits: VoiceLimits) -> None:
        self.root = root
        self.limits = limits
        root.mkdir(parents=True, exist_ok=True)

    def validate(self, data: bytes) -> float:
        """Decode and check the engine's limits; the duration in seconds, or InvalidInput naming `audio_prompt`."""
        return len(decode_reference(data, self.limits)) / SAMPLE_RATE

    def add(self, name: str, data: bytes) -> Voice:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InvalidInput("name", "must be 1–64 letters, digits, spaces, '_', '.', '-', starting with one")
        seconds = self.validate(data)
        if any(v.name == name for v in self.list()):
            raise InvalidInput("name", f"a voice named {name!r} exists; delete it first")
        voice = Voice(
            id=hashlib.sha256(data).hexdigest()[:16], name=name, seconds=round(seconds, 3), bytes=len(data),
            created=time.time(),
        )  # fmt: skip
        self._write(self.root / f"{voice.id}.audio", data)
        self._write(self.root / f"{voice.id}.json", msgspec.json.encode(voice))
        return voice

    def list(self) -> list[Voice]:
        voices = []
        for path in sorted(self.root.glob("*.json")):
            try:
                voices.append(msgspec.json.decode(path.read_bytes(), type=Voice))
            except (OSError, msgspec.DecodeError):
                continue
        return sorted(voices, key=lambda v: v.name)

    def find(self, key: str) -> Voice:
        """By id or by name."""
        for voice in self.list():
            if key in (voice.id, voice.name):
                return voice
        raise VoiceNotFound(key)

    def audio(self, key: str) -> bytes:
        return (self.root / f"{self.find(key).id}.audio").read_bytes()

    def delete(self, key: str) -> Voice:
        voice = self.find(key)
        for suffix in (".json", ".audio"):
            (self.root / f"{voice.id}{suffix}").unlink(missing_ok=True)
        return voice

    def _write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
