"""The seed server's streaming method, kept as the baseline that streaming quality is measured against.

Per chunk it re-runs S3Gen on the last 50 tokens of context plus the new tokens with `finalize=True`,
vocodes that whole window afresh, cuts the context's samples and fades the chunk in over 20 ms. Here
it draws the same flow and source noise (by absolute position) as our streamer, so the comparison is
about the method alone.
"""

from __future__ import annotations

import numpy as np
import torch
from chatterbox.models.s3gen import S3Gen

from engine.audio import SAMPLE_RATE
from engine.models.s3gen.flow import TOKEN_MEL_RATIO, flow_mels
from engine.models.s3gen.hift import HiftStream
from engine.models.s3gen.noise import NoiseTape
from engine.models.s3gen.stream import SAMPLES_PER_TOKEN

CONTEXT_TOKENS = 50
FADE_SECONDS = 0.02


class SeedStyleStream:
    def __init__(self, s3gen: S3Gen, ref: dict, seed: int) -> None:
        self.s3gen = s3gen
        self.ref = ref
        self.seed = seed
        n_prompt = ref["prompt_feat"].shape[1]
        # Same tapes and seeds as S3GenStream, so both read identical noise at each position.
        self.prompt_noise = NoiseTape(seed, 80, block=max(n_prompt, 1)).read(0, n_prompt)
        self.noise = NoiseTape(seed + 2, 80, block=500)
        self.tokens: list[int] = []
        self.trim_fade = s3gen.trim_fade.float().cpu().numpy()

    def push(self, tokens: list[int], final: bool) -> np.ndarray:
        start = len(self.tokens)
        self.tokens.extend(tokens)
        if not tokens:
            return np.zeros(0, np.float32)
        ctx = max(0, start - CONTEXT_TOKENS)
        window = torch.tensor([self.tokens[ctx:]], dtype=torch.long)
        noise = self.noise.read(ctx * TOKEN_MEL_RATIO, len(self.tokens) * TOKEN_MEL_RATIO)
        mel = flow_mels(self.s3gen.flow, self.ref, window, self.prompt_noise, noise)
        vocoder = HiftStream(self.s3gen.mel2wav, self.seed + 3, context=0)
        vocoder.mel_start = vocoder.emitted = ctx * TOKEN_MEL_RATIO  # same source noise by position
        wav = vocoder.push(mel, final=True)
        out = wav[(start - ctx) * SAMPLES_PER_TOKEN :].copy()
        if start == 0:
            out[: len(self.trim_fade)] *= self.trim_fade[: len(out)]
        else:
            n = min(len(out), int(FADE_SECONDS * SAMPLE_RATE))
            out[:n] *= np.linspace(0.0, 1.0, n, dtype=np.float32)
        return out
