"""Streaming S3Gen: token chunks in, audio chunks out, plus the offline path on the same noise."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from chatterbox.models.s3gen import S3Gen

from engine.models.s3gen.flow import LOOKAHEAD_TOKENS, N_TIMESTEPS, TOKEN_MEL_RATIO, flow_mels_batch
from engine.models.s3gen.hift import HOP, HiftStream
from engine.models.s3gen.noise import NoiseTape

SAMPLES_PER_TOKEN = TOKEN_MEL_RATIO * HOP  # 960


class FlowWork(NamedTuple):
    """One stream's flow call for one push: the window of tokens and where its frames go."""

    stream: S3GenStream
    window: list[int]  # empty: no new frames are final yet, so no flow call
    first: int  # absolute mel frame of the window's first token
    target: int  # mel frames final once this push is done
    drop: int  # look-ahead tokens the decoder leaves out
    final: bool

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Works of one shape run through the flow as one batch."""
        return (len(self.window), self.drop, self.stream.prompt_frames, self.stream.flow_steps)


class S3GenStream:
    """Per-stream state: tokens so far, mel frames emitted, the vocoder's carried state.

    For each chunk the flow runs on the voice prompt + `left` already-emitted tokens of context + all
    tokens not yet emitted. Of a non-final chunk's frames, those of the last 3 tokens (look-ahead) and
    of `holdback` more tokens are not emitted: with full attention, frames near the right edge still
    move as tokens arrive. Emitted frames are never recomputed. The final chunk flushes every token.

    `push` does one chunk alone. A worker serving many streams splits it: `plan` each stream's chunk,
    run the flow once for all plans of one shape (`run_flow`), then `finish` each.
    """

    def __init__(
        self,
        s3gen: S3Gen,
        ref: dict,
        seed: int,
        *,
        left: int,
        holdback: int,
        hift_context: int,
        flow_steps: int = N_TIMESTEPS,
    ):
        self.s3gen = s3gen
        self.flow_steps = flow_steps
        self.ref = ref
        self.left = left
        self.holdback = holdback
        self.tokens: list[int] = []
        self.mel_emitted = 0  # frames
        self.samples_emitted = 0
        n_prompt = ref["prompt_feat"].shape[1]
        self.prompt_frames = n_prompt
        self.prompt_noise = NoiseTape(seed, 80, block=max(n_prompt, 1)).read(0, n_prompt)
        self.noise = NoiseTape(seed + 2, 80, block=500)
        self.hift = HiftStream(s3gen.mel2wav, seed + 3, context=hift_context)
        self.trim_fade = s3gen.trim_fade.float().cpu().numpy()
        self.finished = False

    def push(self, tokens: list[int], final: bool) -> np.ndarray:
        """Add valid speech tokens; return the audio (float32 at 24 kHz) that is now final."""
        work = self.plan(tokens, final)
        return self.finish(work, run_flow([work])[0] if work.window else None)

    def _window(self, n: int, final: bool) -> tuple[int, int]:
        """(first token of the flow window, mel frames final) once the stream holds n tokens."""
        stable_tokens = n if final else n - LOOKAHEAD_TOKENS - self.holdback
        return max(0, self.mel_emitted // TOKEN_MEL_RATIO - self.left), max(stable_tokens, 0) * TOKEN_MEL_RATIO

    def shape(self, new_tokens: int, final: bool) -> tuple[int, int, int, int] | None:
        """The shape `plan` would give for this many more tokens, without taking them; None: no flow call."""
        n = len(self.tokens) + new_tokens
        ctx, target = self._window(n, final)
        if target <= self.mel_emitted:
            return None
        return (n - ctx, 0 if final else LOOKAHEAD_TOKENS, self.prompt_frames, self.flow_steps)

    def plan(self, tokens: list[int], final: bool) -> FlowWork:
        if self.finished:
            raise RuntimeError("stream already finished")
        self.tokens.extend(tokens)
        ctx, target = self._window(len(self.tokens), final)
        window = self.tokens[ctx:] if target > self.mel_emitted else []
        drop = 0 if final else LOOKAHEAD_TOKENS
        return FlowWork(self, window, ctx * TOKEN_MEL_RATIO, target, drop, final)

    def finish(self, work: FlowWork, frames: torch.Tensor | None) -> np.ndarray:
        """Emit the plan's final frames (from the flow's output for its window) through HiFT."""
        mel = torch.zeros(1, 80, 0)
        if frames is not None:
            mel = frames[:, :, self.mel_emitted - work.first : work.target - work.first]
            self.mel_emitted = work.target
        audio = self.hift.push(mel, work.final) if (mel.shape[2] or work.final) else np.zeros(0, np.float32)
        audio = self._fade_in(audio)
        self.samples_emitted += len(audio)
        self.finished = work.final
        return audio

    def _fade_in(self, audio: np.ndarray) -> np.ndarray:
        """Upstream's 40 ms trim-and-fade at the start of the utterance, once per stream."""
        fade = self.trim_fade
        start = self.samples_emitted
        if start >= len(fade) or not len(audio):
            return audio
        n = min(len(fade) - start, len(audio))
        audio = audio.copy()
        audio[:n] *= fade[start : start + n]
        return audio


def run_flow(works: list[FlowWork]) -> list[torch.Tensor]:
    """One flow call for plans of one shape (and one model); each row (1, 80, frames) to its `finish`."""
    if len({w.shape for w in works}) != 1 or not works[0].window:
        raise ValueError("run_flow takes non-empty plans of one shape")
    streams = [w.stream for w in works]
    n = len(works[0].window)
    frames = flow_mels_batch(
        streams[0].s3gen.flow,
        [s.ref for s in streams],
        torch.tensor([w.window for w in works], dtype=torch.long),
        [s.prompt_noise for s in streams],
        [s.noise.read(w.first, w.first + n * TOKEN_MEL_RATIO) for s, w in zip(streams, works, strict=True)],
        drop_tokens=works[0].drop,
        n_timesteps=streams[0].flow_steps,
    )
    return list(frames.split(1))


def offline(s3gen: S3Gen, ref: dict, tokens: list[int], seed: int, flow_steps: int = N_TIMESTEPS) -> np.ndarray:
    """All tokens at once with the same noise a stream with this seed draws: the reference for seamless."""
    stream = S3GenStream(s3gen, ref, seed, left=0, holdback=0, hift_context=0, flow_steps=flow_steps)
    return stream.push(tokens, final=True)
