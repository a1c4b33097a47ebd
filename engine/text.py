"""Text checks and sentence splitting for long input."""

from __future__ import annotations

import re

from engine.errors import InvalidInput

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_SOFT_BREAK = re.compile(r"(?<=[,;:])\s+")


def check_text(text: object, max_chars: int) -> str:
    if not isinstance(text, str):
        raise InvalidInput("text", "must be a string")
    stripped = " ".join(text.split())
    if not stripped:
        raise InvalidInput("text", "must not be empty")
    if len(stripped) > max_chars:
        raise InvalidInput("text", f"is {len(stripped)} characters long; the maximum is {max_chars}")
    return stripped


def split_pieces(text: str, max_chars: int) -> list[str]:
    """Cut text at sentence boundaries into pieces of at most `max_chars` characters.

    T3 is trained on sentence-length utterances; one very long prompt drifts and costs a quadratic
    prefill, so long text goes through T3 piece by piece while the audio stays one stream.
    """
    pieces: list[str] = []
    current = ""
    for sentence in _units(text, max_chars):
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def _units(text: str, max_chars: int) -> list[str]:
    """Sentences; a sentence over the limit is cut at commas, then at spaces, then hard."""
    out: list[str] = []
    for sentence in filter(None, (s.strip() for s in _SENTENCE_END.split(text))):
        if len(sentence) <= max_chars:
            out.append(sentence)
            continue
        for clause in filter(None, (c.strip() for c in _SOFT_BREAK.split(sentence))):
            while len(clause) > max_chars:
                cut = clause.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                out.append(clause[:cut].strip())
                clause = clause[cut:].strip()
            if clause:
                out.append(clause)
    return out
