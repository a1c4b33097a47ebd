"""Perth watermarking of audio as it leaves the engine."""

from __future__ import annotations

import numpy as np

from engine.audio import SAMPLE_RATE


class Watermarker:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._perth = None
        if enabled:
            import perth

            self._perth = perth.PerthImplicitWatermarker()
            # The first call costs ~10 s of one-time set-up; pay it at start, not on a user's first chunk.
            self.apply(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)

    def apply(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        if self._perth is None or not len(wav):
            return wav
        return np.asarray(self._perth.apply_watermark(wav, sample_rate=sample_rate), dtype=np.float32)
