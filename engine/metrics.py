"""Per-job figures, shared by the in-process engine and the wire protocol (no torch import here).

`Metrics` is also the one stream tally: wherever a stream's first audio, audio seconds, chunks and RTF are
counted (a worker, the in-process engine, the ZeroMQ and SSE clients, the gateway, the benches), they are
counted by `add_audio` and `end`, measured from wherever that counter's clock starts."""

from __future__ import annotations

from typing import Literal

import msgspec

# Which weights produced a result: a real checkpoint's, or generated random ones (the audio is noise).
Weights = Literal["real", "random"]


class Metrics(msgspec.Struct, kw_only=True):
    first_chunk_latency: float | None = None  # seconds from the start of the job to its first audio
    total_latency: float = 0.0
    rtf: float | None = None  # wall seconds per second of audio
    audio_seconds: float = 0.0
    chunks: int = 0
    tokens_generated: int = 0  # raw T3 samples
    valid_tokens: int = 0  # speech tokens that became audio
    weights: Weights = "real"

    def add_audio(self, samples: int, sample_rate: int, elapsed: float) -> None:
        """Count one more audio chunk of `samples`, `elapsed` seconds after the job started."""
        self.chunks += 1
        self.audio_seconds += samples / sample_rate
        if self.first_chunk_latency is None and samples:
            self.first_chunk_latency = elapsed
        self.end(elapsed)

    def end(self, elapsed: float) -> None:
        """The stream's time so far is `elapsed` (e.g. when it ended, after its last chunk)."""
        self.total_latency = elapsed
        self.rtf = elapsed / self.audio_seconds if self.audio_seconds else None
