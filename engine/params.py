"""Per-request synthesis parameters and their documented ranges."""

from __future__ import annotations

import math

import msgspec

from engine.errors import InvalidInput

# Inclusive ranges; sampling ranges follow upstream's Gradio demo, chunk sizes the seed's API.
RANGES: dict[str, tuple[float, float]] = {
    "exaggeration": (0.25, 2.0),
    "temperature": (0.05, 5.0),
    "cfg_weight": (0.0, 1.0),
    "repetition_penalty": (1.0, 2.0),
    "min_p": (0.0, 1.0),
    "top_p": (0.01, 1.0),
    "chunk_size": (10, 200),
    "first_chunk_size": (4, 200),
    "max_new_tokens": (1, 4096),
    "seed": (0, 2**63 - 1),
}
INTEGER_FIELDS = frozenset({"chunk_size", "first_chunk_size", "max_new_tokens", "seed"})


class SynthesisParams(msgspec.Struct, frozen=True, kw_only=True):
    exaggeration: float = 0.5
    temperature: float = 0.8
    cfg_weight: float = 0.5
    repetition_penalty: float = 1.2
    min_p: float = 0.05
    top_p: float = 1.0
    chunk_size: int = 50
    # None: the engine's default, capped at chunk_size.
    first_chunk_size: int | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    # Generate exactly max_new_tokens, sampling past the stop token (dropped like any non-speech id): for
    # benchmarks and tests of fixed length; random weights otherwise sample it at random (~1 in 8000).
    ignore_stop: bool = False

    def validated(self) -> SynthesisParams:
        """Return self when every field is in range; otherwise raise InvalidInput naming the field."""
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(name, f"must be a number, got {type(value).__name__}")
            if name in INTEGER_FIELDS and not float(value).is_integer():
                raise InvalidInput(name, f"must be an integer, got {value}")
            if not math.isfinite(value) or not low <= value <= high:
                raise InvalidInput(name, f"must be between {_fmt(low)} and {_fmt(high)}, got {value}")
        return self


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def chunk_schedule(first: int, size: int):
    """Token counts per chunk: a small first chunk, then doubling until `size`, then `size` forever.

    The first chunk buys a short time to first audio; growth keeps each later chunk ready before the
    audio already sent runs out, and bounds how many chunks (and so how much per-chunk overhead) a
    stream costs.
    """
    n = min(first, size)
    while True:
        yield n
        n = min(n * 2, size)
