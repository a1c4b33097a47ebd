"""The one sampler of T3 tokens, step for step as upstream `T3.inference`: CFG (`cond + w * (cond -
uncond)`), repetition penalty over the ids so far, temperature, min_p, top_p, multinomial, but drawn
from the job's own torch.Generator, so a seeded job samples the same ids alone or in any batch."""

from __future__ import annotations

import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from engine.params import SynthesisParams


class Sampler:
    def __init__(self, params: SynthesisParams, generator: torch.Generator) -> None:
        self.params = params
        self.generator = generator
        self.cfg = params.cfg_weight > 0.0
        self.penalty = RepetitionPenaltyLogitsProcessor(penalty=float(params.repetition_penalty))
        self.min_p = MinPLogitsWarper(min_p=params.min_p)
        self.top_p = TopPLogitsWarper(top_p=params.top_p)

    @property
    def rows(self) -> int:
        """Batch rows per job: a conditioned and an unconditioned one with CFG."""
        return 2 if self.cfg else 1

    def sample(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """The next id (a (1, 1) tensor) from this job's `rows` logits and the ids it has so far."""
        p = self.params
        scores = logits[0:1]
        if self.cfg:
            scores = scores + p.cfg_weight * (scores - logits[1:2])
        scores = self.penalty(seen, scores)
        if p.temperature != 1.0:
            scores = scores / p.temperature
        scores = self.top_p(seen, self.min_p(seen, scores))
        return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self.generator)
