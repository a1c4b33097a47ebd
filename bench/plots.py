"""PNG plots of bench results: one stream's T3/S3Gen timeline, latency, RTF and throughput against concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt

from bench.load import StreamRecord
from bench.report import BenchResult

if TYPE_CHECKING:
    from bench.throughput import ThroughputResult


def _title(result: BenchResult) -> str:
    where = result.machine.gpu or f"{result.machine.cores}-core CPU"
    return f"{where}, weights {result.weights}"


def timeline(record: StreamRecord, result: BenchResult, path: Path) -> None:
    """T3 and S3Gen spans of each chunk on one time axis: the overlap is where both rows are busy."""
    fig, ax = plt.subplots(figsize=(9, 2.8))
    for i, chunk in enumerate(record.timeline):
        color = f"C{i % 10}"
        ax.broken_barh([(chunk.t3[0], chunk.t3[1] - chunk.t3[0])], (10, 8), color=color, alpha=0.8)
        ax.broken_barh([(chunk.s3gen[0], chunk.s3gen[1] - chunk.s3gen[0])], (0, 8), color=color, alpha=0.8)
        ax.plot([chunk.arrived], [-3], marker="v", color=color)
        ax.text(chunk.t3[0], 19, str(i + 1), fontsize=7)
    ax.set_yticks([4, 14], ["S3Gen", "T3"])
    ax.set_ylim(-6, 22)
    ax.set_xlabel("seconds since the request (▼ = chunk reached the SSE client)")
    ax.set_title(f"One stream, chunk by chunk — {_title(result)}")
    _save(fig, path)


def _by_concurrency(xs: list[int], ylabel: str, title: str):
    """A figure with concurrency on a log2 x axis; the caller plots, then calls _save."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    _concurrency_axis(ax, xs, ylabel)
    ax.set_title(title, fontsize=9)
    return fig, ax


def _concurrency_axis(ax, xs: list[int], ylabel: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(result: BenchResult, path: Path) -> None:
    levels = [lv for lv in result.levels if lv.first_audio_p50 is not None]
    xs = [lv.concurrency for lv in levels]
    fig, ax = _by_concurrency(xs, "first audio over SSE (s)", f"Time to first audio — {_title(result)}")
    ax.plot(xs, [lv.first_audio_p50 for lv in levels], marker="o", label="p50")
    ax.plot(xs, [lv.first_audio_p95 for lv in levels], marker="o", label="p95")
    ax.set_ylim(bottom=0)
    ax.legend()
    _save(fig, path)


def rtf(result: BenchResult, path: Path) -> None:
    levels = [lv for lv in result.levels if lv.rtf_p50 is not None]
    xs = [lv.concurrency for lv in levels]
    fig, ax = _by_concurrency(xs, "wall s per audio s", f"Real-time factor — {_title(result)}")
    ax.plot(xs, [lv.rtf_p50 for lv in levels], marker="o", label="per-stream RTF p50")
    ax.plot(xs, [lv.rtf_p95 for lv in levels], marker="o", label="per-stream RTF p95")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="real time")
    other = ax.twinx()
    other.plot(xs, [lv.audio_per_wall for lv in levels], marker="s", color="C3", label="audio s per wall s (all)")
    other.set_ylabel("aggregate audio s per wall s", color="C3")
    ax.set_ylim(bottom=0)
    other.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + other.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    _save(fig, path)


def throughput(result: ThroughputResult, path: Path) -> None:
    """Aggregate throughput and first-audio p95 against concurrency, one line per slot capacity."""
    xs = sorted({lv.concurrency for run in result.runs for lv in run.levels})
    where = result.machine.gpu or f"{result.machine.cores}-core CPU"
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    _concurrency_axis(left, xs, "audio s per wall s (all streams)")
    _concurrency_axis(right, xs, "first audio p95 (s)")
    for run in result.runs:
        levels = run.levels
        label = f"capacity {run.capacity}"
        left.plot([lv.concurrency for lv in levels], [lv.audio_per_wall for lv in levels], marker="o", label=label)
        firsts = [lv for lv in levels if lv.first_audio_p95 is not None]
        right.plot([lv.concurrency for lv in firsts], [lv.first_audio_p95 for lv in firsts], marker="o", label=label)
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    left.legend(fontsize=8)
    fig.suptitle(f"One slot, capacity 1 vs batched — {where}, weights {result.weights}", fontsize=10)
    _save(fig, path)
