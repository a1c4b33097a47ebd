"""Deterministic noise indexed by absolute position, so streamed and offline runs draw the same noise."""

from __future__ import annotations

from collections import OrderedDict

import torch


class NoiseTape:
    """Gaussian noise of shape (channels, position), generated in seeded blocks on demand.

    Block k is drawn from a generator seeded with (seed, k), so any range can be read in any order and
    a stream needs only the few blocks it is currently reading (bounded LRU).
    """

    def __init__(self, seed: int, channels: int, block: int, keep_blocks: int = 4) -> None:
        self.seed = seed
        self.channels = channels
        self.block = block
        self._blocks: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._keep = keep_blocks

    def _get(self, k: int) -> torch.Tensor:
        blk = self._blocks.get(k)
        if blk is None:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + k) & 0x7FFF_FFFF_FFFF_FFFF)
            blk = torch.randn(self.channels, self.block, generator=gen)
            self._blocks[k] = blk
            while len(self._blocks) > self._keep:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(k)
        return blk

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Noise for positions [start, stop) as (channels, stop - start)."""
        if stop <= start:
            return torch.zeros(self.channels, 0)
        first, last = start // self.block, (stop - 1) // self.block
        parts = [self._get(k) for k in range(first, last + 1)]
        joined = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        offset = start - first * self.block
        return joined[:, offset : offset + (stop - start)]
