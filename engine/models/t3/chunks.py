"""Streaming T3: prefill once, decode token by token with the KV cache, yield token chunks.

Sampling mirrors upstream `T3.inference` step for step (CFG as a batch of 2, repetition penalty over
the ids so far, temperature, min_p, top_p, multinomial), but draws from a per-stream generator so a
seeded stream is reproducible, and yields as it goes instead of returning at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import msgspec
import torch
import torch.nn.functional as F
from chatterbox.models.t3 import T3
from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.models.tokenizers import EnTokenizer
from chatterbox.tts import punc_norm
from transformers import DynamicCache
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from engine.params import SynthesisParams, chunk_schedule

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
    on. Exactly one chunk (the last piece's) has final=True.
    """

    def __init__(self, first_chunk_size: int, chunk_size: int) -> None:
        self.schedule = chunk_schedule(first_chunk_size, chunk_size)
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


class T3Streamer:
    """Model code only: no sockets, no threads. One call to `stream` runs one job to completion."""

    def __init__(self, t3: T3, tokenizer: EnTokenizer) -> None:
        self.t3 = t3
        self.tokenizer = tokenizer

    def text_ids(self, text: str) -> torch.Tensor:
        hp = self.t3.hp
        ids = self.tokenizer.text_to_tokens(punc_norm(text)).to(self.t3.device)
        ids = F.pad(ids, (1, 0), value=hp.start_text_token)
        return F.pad(ids, (0, 1), value=hp.stop_text_token)

    @torch.inference_mode()
    def tokens(
        self,
        text_ids: torch.Tensor,
        cond: T3Cond,
        params: SynthesisParams,
        max_new_tokens: int,
        generator: torch.Generator,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[int]:
        """Raw sampled ids for one piece of text, stopping on the stop token or the bound."""
        t3 = self.t3
        hp = t3.hp
        cfg = params.cfg_weight > 0.0
        batch = 2 if cfg else 1
        ids = text_ids.expand(batch, -1)
        start = torch.full((batch, 1), hp.start_speech_token, dtype=torch.long, device=t3.device)
        embeds, _ = t3.prepare_input_embeds(
            t3_cond=cond, text_tokens=ids, speech_tokens=start, cfg_weight=params.cfg_weight
        )
        # Upstream appends a second start-of-speech embedding after the prompt; the model was used so.
        bos = t3.speech_emb(start[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
        embeds = torch.cat([embeds, bos.expand(batch, -1, -1)], dim=1)

        cache = DynamicCache()
        hidden = t3.tfmr(inputs_embeds=embeds, past_key_values=cache, use_cache=True).last_hidden_state
        logits = t3.speech_head(hidden[:, -1, :])
        seen = start[:1].clone()
        penalty = RepetitionPenaltyLogitsProcessor(penalty=float(params.repetition_penalty))
        min_p = MinPLogitsWarper(min_p=params.min_p)
        top_p = TopPLogitsWarper(top_p=params.top_p)
        for i in range(max_new_tokens):
            if should_stop():
                return
            scores = logits[0:1]
            if cfg:
                scores = scores + params.cfg_weight * (scores - logits[1:2])
            scores = penalty(seen, scores)
            if params.temperature != 1.0:
                scores = scores / params.temperature
            scores = top_p(seen, min_p(seen, scores))
            token = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)
            token_id = int(token)
            if token_id == hp.stop_speech_token and not params.ignore_stop:
                return
            yield token_id
            seen = torch.cat([seen, token], dim=1)
            step = t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
            out = t3.tfmr(inputs_embeds=step.expand(batch, -1, -1), past_key_values=cache, use_cache=True)
            logits = t3.speech_head(out.last_hidden_state[:, -1, :])

    def stream(
        self,
        pieces: Sequence[str],
        cond: T3Cond,
        params: SynthesisParams,
        *,
        first_chunk_size: int,
        max_new_tokens: int,
        generator: torch.Generator,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[TokenChunk]:
        """Valid tokens of all pieces as one stream of chunks, cut by a TokenChunker."""
        chunker = TokenChunker(first_chunk_size, params.chunk_size)
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            text_ids = self.text_ids(piece)
            for token in self.tokens(text_ids, cond, params, max_new_tokens, generator, should_stop):
                if (chunk := chunker.add(token)) is not None:
                    yield chunk
                    chunker.restart_clock()
            if should_stop():
                return
            if (chunk := chunker.end_piece(index == last)) is not None:
                yield chunk
                chunker.restart_clock()
