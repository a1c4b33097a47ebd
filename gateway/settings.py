"""Gateway settings, from `CHATTERBOX_GATEWAY_*` (and `CHATTERBOX_API_KEY`, `CHATTERBOX_MAX_TEXT_CHARS`, and the
engine's `CHATTERBOX_VOICE_*` reference-voice limits)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from engine.settings import VOICE_PREFIX, VoiceLimits, settings_from_env

PREFIX = "CHATTERBOX_GATEWAY_"


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 6095
    # Empty: no auth. Otherwise every route but /health needs `Authorization: Bearer KEY` or `X-API-Key: KEY`.
    api_key: str = ""
    # Comma-separated origins allowed by CORS; empty: no CORS headers.
    cors_origins: str = ""
    # Longest text accepted (characters); longer text is split at sentences and streamed as one stream.
    max_text_chars: int = 3000
    # Request bodies (uploads included) beyond this are refused with 413 before they are read whole.
    max_body_bytes: int = 25 * 1024 * 1024
    # Reference audio limits, checked on upload: the engine's own (`CHATTERBOX_VOICE_*`), so a stored voice is
    # one every synthesis accepts.
    voice: VoiceLimits = msgspec.field(default_factory=VoiceLimits)
    # Where uploaded voices live, so they survive restarts.
    data_dir: str = ""
    # SSE comment sent while a job waits (seconds), so proxies keep the stream open.
    keepalive_seconds: float = 5.0
    # The built frontend, served at / when present.
    frontend_dir: str = "frontend/dist"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> GatewaySettings:
        env = os.environ if env is None else env
        refuse_gateway_voice_variables(env)
        shared = {
            "api_key": env.get("CHATTERBOX_API_KEY"),
            "max_text_chars": env.get("CHATTERBOX_MAX_TEXT_CHARS"),
            "voice": VoiceLimits.from_env(env),
        }
        merged = {k: v for k, v in shared.items() if v is not None} | {
            k: v for k, v in overrides.items() if v is not None
        }
        return settings_from_env(cls, PREFIX, env, merged)

    def voices_dir(self) -> Path:
        base = Path(self.data_dir) if self.data_dir else Path.home() / ".local" / "share" / "chatterbox-streaming"
        return base / "voices"

    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def refuse_gateway_voice_variables(env: Mapping[str, str]) -> None:
    """`CHATTERBOX_GATEWAY_VOICE_*` once set upload limits apart from the engine's (so the gateway stored voices
    every synthesis then refused); refuse them rather than ignore them, naming the variable to set instead."""
    old = sorted(k for k in env if k.startswith(PREFIX + "VOICE_"))
    if old:
        renames = "; ".join(
            f"{k} is no longer read, set {VOICE_PREFIX}{k.removeprefix(PREFIX + 'VOICE_')}" for k in old
        )
        raise ValueError(f"{renames} (the gateway checks uploads against the engine's {VOICE_PREFIX}* limits)")
