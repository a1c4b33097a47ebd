"""Many T3 streams decoded together: one transformer forward per step for every active stream.

Continuous batching at step boundaries: `add` (or `begin`, then `prefill` in parts) prefills a stream
alone and merges its KV cache into the batch (left-padded, masked); `remove` drops its rows; `step`
samples one token per stream, each with its own sampling parameters, CFG rows and torch.Generator (so a
seeded stream samples the same tokens alone or in a batch), then runs one forward for all of them.
Model code only: no sockets, no threads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from chatterbox.models.t3 import T3
from chatterbox.models.t3.modules.cond_enc import T3Cond
from transformers import DynamicCache

from engine.models.t3.prompt import prompt_embeds
from engine.models.t3.sampling import Sampler
from engine.params import SynthesisParams


class BatchStream:
    """One stream's decoding state: its rows in the batch, what it has sampled, how to sample."""

    def __init__(self, key: str, params: SynthesisParams, max_new_tokens: int, generator: torch.Generator) -> None:
        self.key = key
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.sampler = Sampler(params, generator)
        self.rows = self.sampler.rows
        self.steps = 0  # tokens sampled so far
        self.length = 0  # real (unpadded) positions in its KV cache
        self.seen: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None  # (rows, vocab) for the next sample
        # While its prompt is prefilled in parts: the prompt's embeddings, its own cache, positions done.
        self.prompt: torch.Tensor | None = None
        self.cache: DynamicCache | None = None
        self.prefilled = 0

    def ends_with(self, token: int, stop: int) -> bool:
        return (token == stop and not self.params.ignore_stop) or self.steps >= self.max_new_tokens

    def sample(self) -> int:
        assert self.logits is not None and self.seen is not None
        token = self.sampler.sample(self.logits, self.seen)
        self.seen = torch.cat([self.seen, token], dim=1)
        self.steps += 1
        return int(token)


class T3Batch:
    def __init__(self, t3: T3) -> None:
        self.t3 = t3
        self.streams: list[BatchStream] = []
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: keys, values (rows, h, len, d)
        self.mask: torch.Tensor | None = None  # (rows, len): 1 where a row has a real position

    def __len__(self) -> int:
        return len(self.streams)

    def add(self, stream: BatchStream, text_ids: torch.Tensor, cond: T3Cond) -> None:
        """Prefill one stream's whole prompt alone (its length is its own), then join the batch."""
        self.begin(stream, text_ids, cond)
        self.prefill(stream, None)

    @torch.inference_mode()
    def begin(self, stream: BatchStream, text_ids: torch.Tensor, cond: T3Cond) -> None:
        """Embed a stream's prompt; `prefill` then runs it, in parts if asked, before it joins."""
        t3 = self.t3
        stream.prompt = prompt_embeds(t3, text_ids, cond, stream.rows, stream.params.cfg_weight)
        stream.cache = DynamicCache()
        stream.prefilled = 0
        stream.seen = torch.full((1, 1), t3.hp.start_speech_token, dtype=torch.long, device=t3.device)

    @torch.inference_mode()
    def prefill(self, stream: BatchStream, positions: int | None) -> bool:
        """Run up to `positions` more prompt positions (None: all); once the prompt is done the stream
        joins the batch and this returns True. Parts let a long prompt share the time of several
        decode steps instead of stalling the running streams for all of it at once."""
        assert stream.prompt is not None and stream.cache is not None
        end = stream.prompt.shape[1] if positions is None else min(stream.prefilled + positions, stream.prompt.shape[1])
        part = stream.prompt[:, stream.prefilled : end]
        hidden = self.t3.tfmr(inputs_embeds=part, past_key_values=stream.cache, use_cache=True).last_hidden_state
        stream.prefilled = end
        if end < stream.prompt.shape[1]:
            return False
        stream.logits = self.t3.speech_head(hidden[:, -1, :])
        stream.length = end
        self._join(stream, [(layer.keys, layer.values) for layer in stream.cache.layers])
        stream.prompt, stream.cache = None, None
        return True

    def _join(self, stream: BatchStream, own: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        own_mask = torch.ones(stream.rows, stream.length, dtype=torch.long, device=self.t3.device)
        if not self.streams:
            self.layers, self.mask = own, own_mask
        else:
            assert self.mask is not None
            width = max(self.mask.shape[1], stream.length)
            # Left padding keeps every row's newest position in the last column.
            self.layers = [
                (
                    torch.cat([_left_pad(k, width), _left_pad(nk, width)]),
                    torch.cat([_left_pad(v, width), _left_pad(nv, width)]),
                )
                for (k, v), (nk, nv) in zip(self.layers, own, strict=True)
            ]
            self.mask = torch.cat([_left_pad(self.mask, width), _left_pad(own_mask, width)])
        self.streams.append(stream)

    def remove(self, key: str) -> None:
        """Drop a stream's rows (finished or cancelled) at a step boundary."""
        keep: list[int] = []
        row = 0
        for s in self.streams:
            if s.key != key:
                keep.extend(range(row, row + s.rows))
            row += s.rows
        self.streams = [s for s in self.streams if s.key != key]
        if not self.streams:
            self.layers, self.mask = [], None
            return
        index = torch.tensor(keep, device=self.t3.device)
        self.layers = [(k[index], v[index]) for k, v in self.layers]
        assert self.mask is not None
        self.mask = self.mask[index]
        # Columns no row uses any more are dropped, so a long stream that left does not cost the others.
        used = int(self.mask.sum(dim=0).ne(0).long().argmax())
        if used:
            self.layers = [(k[:, :, used:], v[:, :, used:]) for k, v in self.layers]
            self.mask = self.mask[:, used:]

    @torch.inference_mode()
    def step(self) -> dict[str, int]:
        """One token per stream (the stop token included: the caller ends that stream), then one
        forward for all streams that continue."""
        t3 = self.t3
        hp = t3.hp
        sampled = {s.key: s.sample() for s in self.streams}
        going = [s for s in self.streams if not s.ends_with(sampled[s.key], hp.stop_speech_token)]
        for s in [s for s in self.streams if s not in going]:
            self.remove(s.key)
        if not going:
            return sampled
        embeds = []
        for s in self.streams:
            token = s.seen[:, -1:]  # type: ignore[index]
            step = t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(s.steps)
            embeds.append(step.expand(s.rows, -1, -1))
        assert self.mask is not None
        self.mask = torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=self.mask.dtype)], dim=1)
        positions = torch.cat([torch.full((s.rows, 1), s.length, device=t3.device) for s in self.streams])
        cache = DynamicCache(ddp_cache_data=self.layers)
        out = t3.tfmr(
            inputs_embeds=torch.cat(embeds), attention_mask=self.mask, position_ids=positions,
            past_key_values=cache, use_cache=True,
        )  # fmt: skip
        self.layers = [(layer.keys, layer.values) for layer in cache.layers]
        logits = t3.speech_head(out.last_hidden_state[:, -1, :])
        row = 0
        for s in self.streams:
            s.logits = logits[row : row + s.rows]
            s.length += 1
            row += s.rows
        return sampled


def _left_pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """Pad the sequence axis (-2 for KV tensors (rows, h, len, d), -1 for masks (rows, len)) on the left."""
    if x.dim() == 2:
        return F.pad(x, (width - x.shape[-1], 0))
    return F.pad(x, (0, 0, width - x.shape[-2], 0))
