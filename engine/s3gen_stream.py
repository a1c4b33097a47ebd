"""Streaming S3Gen: token chunks in, audio chunks out, plus the offline path on the same noise."""

from __future__ import annotations

import numpy as np
import torch
from chatterbox.models.s3gen import S3Gen

from engine.flow import LOOKAHEAD_TOKENS, TOKEN_MEL_RATIO, flow_mels
from engine.hift_stream import HOP, HiftStream
from engine.noise import NoiseTape

SAMPLES_PER_TOKEN = TOKEN_MEL_RATIO * HOP  # 960


class S3GenStream:
    """Per-stream state: tokens so far, mel frames emitted, the vocoder's carried state.

    For each chunk the flow runs on the voice prompt + `left` already-emitted tokens of context + all
    tokens not yet emitted. Of a non-final chunk's frames, those of the last 3 tokens (look-ahead) and
    of `holdback` more tokens are not emitted: with full attention, frames near the right edge still
    move as tokens arrive. Emitted frames are never recomputed. The final chunk flushes every token.
    """

    def __init__(self, s3gen: S3Gen, ref: dict, seed: int, *, left: int, holdback: int, hift_context: int):
        self.s3gen = s3gen
        self.ref = ref
        self.left = left
        self.holdback = holdback
        self.tokens: list[int] = []
        self.mel_emitted = 0  # frames
        self.samples_emitted = 0
        n_prompt = ref["prompt_feat"].shape[1]
        self.prompt_noise = NoiseTape(seed, 80, block=max(n_prompt, 1)).read(0, n_prompt)
        self.noise = NoiseTape(seed + 2, 80, block=500)
        self.hift = HiftStream(s3gen.mel2wav, seed + 3, context=hift_context)
        self.trim_fade = s3gen.trim_fade.float().cpu().numpy()
        self.finished = False

    def push(self, tokens: list[int], final: bool) -> np.ndarray:
        """Add valid speech tokens; return the audio (float32 at 24 kHz) that is now final."""
        if self.finished:
            raise RuntimeError("stream already finished")
        self.tokens.extend(tokens)
        n = len(self.tokens)
        stable_tokens = n if final else n - LOOKAHEAD_TOKENS - self.holdback
        target = max(stable_tokens, 0) * TOKEN_MEL_RATIO
        mel = torch.zeros(1, 80, 0)
        if target > self.mel_emitted:
            ctx = max(0, self.mel_emitted // TOKEN_MEL_RATIO - self.left)
            window = torch.tensor([self.tokens[ctx:]], dtype=torch.long)
            first = ctx * TOKEN_MEL_RATIO
            noise = self.noise.read(first, n * TOKEN_MEL_RATIO)
            drop = 0 if final else LOOKAHEAD_TOKENS
            frames = flow_mels(self.s3gen.flow, self.ref, window, self.prompt_noise, noise, drop_tokens=drop)
            mel = frames[:, :, self.mel_emitted - first : target - first]
            self.mel_emitted = target
        audio = self.hift.push(mel, final) if (mel.shape[2] or final) else np.zeros(0, np.float32)
        audio = self._fade_in(audio)
        self.samples_emitted += len(audio)
        self.finished = final
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


def offline(s3gen: S3Gen, ref: dict, tokens: list[int], seed: int) -> np.ndarray:
    """All tokens at once with the same noise a stream with this seed draws: the reference for seamless."""
    stream = S3GenStream(s3gen, ref, seed, left=0, holdback=0, hift_context=0)
    return stream.push(tokens, final=True)
