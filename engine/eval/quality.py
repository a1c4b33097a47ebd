"""Streamed-vs-offline error, overall and by distance from chunk edges."""

from __future__ import annotations

import math

import numpy as np

from engine.audio import SAMPLE_RATE

# Distance buckets in milliseconds from the nearest chunk edge.
BUCKETS_MS = ((0, 20), (20, 80), (80, 200), (200, 10**9))


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    err = float(np.sum((reference.astype(np.float64) - test) ** 2))
    sig = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if err == 0 else 10 * math.log10(sig / err)


def snr_by_edge_distance(
    reference: np.ndarray, test: np.ndarray, chunk_lengths: list[int], sample_rate: int = SAMPLE_RATE
) -> dict[str, float]:
    """SNR in each distance bucket; the edges are where consecutive chunks of `test` meet."""
    if len(reference) != len(test):
        raise ValueError(f"lengths differ: {len(reference)} vs {len(test)}")
    edges = np.cumsum(chunk_lengths)[:-1]
    idx = np.arange(len(test))
    if len(edges):
        dist = np.min(np.abs(idx[:, None] - edges[None, :]), axis=1)
    else:
        dist = np.full(len(test), 10**12)
    out: dict[str, float] = {}
    for lo, hi in BUCKETS_MS:
        mask = (dist >= lo * sample_rate // 1000) & (dist < hi * sample_rate // 1000)
        label = f"{lo}-{hi}ms" if hi < 10**9 else f">={lo}ms"
        out[label] = snr_db(reference[mask], test[mask]) if mask.any() else float("nan")
    return out
