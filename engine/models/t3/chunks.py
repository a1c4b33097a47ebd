"""How a job's sampled ids become token chunks: non-speech ids dropped, cut on the growing schedule
(or once per text piece for regular synthesis). Plain Python: no torch."""

from __future__ import annotations

import itertools
import sys
import time

import msgspec

from engine.params import chunk_schedule

SPEECH_VOCAB = 6561  # ids >= this are not speech (6561 start, 6562 stop, the rest unused)


class TokenChunk(msgspec.Struct, kw_only=True):
    seq: int  # 1-based chunk number within the stream
    start: int  # index of tokens[0] among the stream's valid tokens
    tokens: list[int]  # valid speech tokens only
    final: bool
    generated: int  # raw tokens sampled for this chunk, valid or not
    t_start: float  # monotonic seconds: T3 work on this chunk began / ended
    t_end: float


class OpenChunk:
    """The chunk being filled: valid tokens since the last cut and the raw samples behind them."""

    def __init__(self) -> None:
        self.seq = 0
        self.start = 0
        self.pending: list[int] = []
        self.raw = 0
        self.t_start = time.monotonic()

    def cut(self, final: bool) -> TokenChunk:
        self.seq += 1
        now = time.monotonic()
        chunk = TokenChunk(
            seq=self.seq, start=self.start, tokens=self.pending, final=final, generated=self.raw,
            t_start=self.t_start, t_end=now,
        )  # fmt: skip
        self.start += len(self.pending)
        self.pending, self.raw, self.t_start = [], 0, now
        return chunk

    def restart_clock(self) -> None:
        """After the consumer had the chunk: its time (in-process, S3Gen's) is not T3's."""
        self.t_start = time.monotonic()


class TokenChunker:
    """Raw sampled ids in, token chunks out on the growing schedule.

    Non-speech ids are counted as generated but dropped. A text piece's end closes the current chunk
    early, so its audio is not held back behind the next piece's prefill; the schedule then carries
    on. Exactly one chunk (the last piece's) has final=True. `whole`: no schedule, one chunk per piece
    (regular synthesis).
    """

    def __init__(self, first_chunk_size: int, chunk_size: int, whole: bool = False) -> None:
        self.schedule = itertools.repeat(sys.maxsize) if whole else chunk_schedule(first_chunk_size, chunk_size)
        self.target = next(self.schedule)
        self.chunk = OpenChunk()

    def add(self, token: int) -> TokenChunk | None:
        chunk = self.chunk
        chunk.raw += 1
        if token < SPEECH_VOCAB:
            chunk.pending.append(token)
        if len(chunk.pending) < self.target:
            return None
        self.target = next(self.schedule)
        return chunk.cut(final=False)

    def end_piece(self, last: bool) -> TokenChunk | None:
        if last or self.chunk.pending:
            return self.chunk.cut(final=last)
        return None

    def restart_clock(self) -> None:
        self.chunk.restart_clock()
