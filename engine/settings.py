"""Engine settings, read once from `CHATTERBOX_*` environment variables into a typed struct."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import TypeVar

import msgspec

PREFIX = "CHATTERBOX_"
VOICE_PREFIX = PREFIX + "VOICE_"
S = TypeVar("S", bound=msgspec.Struct)


class VoiceLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Reference-voice limits (`CHATTERBOX_VOICE_*`): one set, read by the engine for every reference it
    decodes and by the gateway for every upload to `POST /voices`, so a stored voice is one the engine takes."""

    # Decoded duration, in seconds.
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    # Size of the file as sent, in bytes.
    max_bytes: int = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 0 <= self.min_seconds <= self.max_seconds or self.max_bytes <= 0:
            raise ValueError(
                f"voice limits need 0 <= min_seconds <= max_seconds and max_bytes > 0, got min_seconds="
                f"{self.min_seconds:g}, max_seconds={self.max_seconds:g}, max_bytes={self.max_bytes}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> VoiceLimits:
        return settings_from_env(cls, VOICE_PREFIX, env, overrides)


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True):
    # `auto`, `hub`, `random`, `random:SEED`, or a directory holding the five checkpoint files.
    checkpoint: str = "auto"
    device: str = "cpu"
    # auto: bfloat16 for T3 and the flow on CUDA and on CPUs with AMX or AVX512-BF16, else float32. HiFT
    # stays float32.
    dtype: str = "auto"
    cache_dir: str = ""
    # Intra-op threads for torch; 0 keeps torch's default (all cores).
    threads: int = 0
    # Longest text accepted by one request, in characters; longer text is split into pieces below this.
    max_text_chars: int = 3000
    # Pieces handed to T3 at once are cut at sentence boundaries to at most this many characters.
    piece_chars: int = 300
    max_new_tokens: int = 1000
    first_chunk_size: int = 12
    chunk_size: int = 50
    # Streaming S3Gen: tokens of already-emitted left context re-run through the flow with each chunk,
    # tokens of extra right context held back beyond the 3-token look-ahead, and HiFT context frames.
    flow_left_tokens: int = 8
    flow_holdback_tokens: int = 2
    hift_context_frames: int = 8
    # Euler steps of S3Gen's CFM decoder per flow call (upstream: 10). Each step is one decoder pass
    # (two rows with CFG), so the flow's cost is about proportional; fewer trades quality for speed.
    flow_steps: int = 10
    # Reference-voice limits, from `CHATTERBOX_VOICE_*` (the gateway checks uploads against the same ones).
    voice: VoiceLimits = msgspec.field(default_factory=VoiceLimits)
    watermark: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.flow_steps <= 100:
            raise ValueError(f"CHATTERBOX_FLOW_STEPS must be 1..100, got {self.flow_steps}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> EngineSettings:
        return settings_from_env(cls, PREFIX, env, {"voice": VoiceLimits.from_env(env), **overrides})


def settings_from_env(
    cls: type[S], prefix: str, env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
) -> S:
    """Build a settings struct from `<PREFIX><FIELD>` variables; explicit non-None overrides win."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    for name in cls.__struct_fields__:
        key = prefix + name.upper()
        if key in env:
            raw[name] = env[key]
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad {prefix}* setting: {exc}") from exc


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A pipeline worker's place: its slot and the slot's T3 → S3Gen pipe (`CHATTERBOX_WORKER_*`)."""

    slot: str = "cpu0"
    # The slot's PUSH/PULL endpoint; S3Gen binds it, T3 connects. Empty: an ipc socket named after the slot.
    pipe: str = ""
    # Jobs the slot takes at once; reported to the broker, which dispatches against it. T3 decodes
    # them as one batch; S3Gen interleaves and batches their chunks. 8 gave 2.8x the throughput on a 2-core
    # CPU (README); deploy/stack-env.sh sets 32 on a GPU.
    capacity: int = 8
    # Prompt positions T3 prefills before each batched decoding step (a new job's prompt is split over
    # steps, so the running streams are never stalled for a whole prefill); more lets a new job start
    # sooner, fewer keeps the running streams' step time steady.
    prefill_chunk: int = 32
    # S3Gen vocodes a job's queued token chunks (all but its first) in one pass up to this many tokens:
    # under load each flow call then re-runs the voice prompt and context once for more new tokens.
    coalesce_tokens: int = 200
    # Most jobs S3Gen runs through the flow in one call when their token windows have the same shape
    # (1: one job per call).
    flow_batch: int = 8
    # Passes S3Gen vocodes at once, each on its own thread, while its T3 worker has no job: T3's share
    # of a CPU is idle then, and two passes of different jobs use two cores far better than one pass
    # on two threads. While T3 decodes, one pass at a time. 0: 2 on a CPU, 1 on a GPU.
    idle_lanes: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> WorkerSettings:
        return settings_from_env(cls, PREFIX + "WORKER_", env, overrides)

    def pipe_address(self) -> str:
        if self.pipe:
            return self.pipe
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.slot)
        return f"ipc://{tempfile.gettempdir()}/chatterbox-{safe}.pipe"
