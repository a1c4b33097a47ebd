"""`python -m bench.throughput` (`make bench-throughput`): many streams on one slot, capacity 1 vs N.

For each capacity in turn (the same run, the same texts, seeds and machine) it starts a broker, one
T3 + S3Gen slot of that capacity and a gateway, then sends waves of SSE streams at each concurrency
level. Every request samples exactly --tokens raw tokens (ignore_stop), so both capacities do the same
work. Reports per level aggregate throughput (audio seconds delivered per wall second), first-audio
p50/p95 and per-stream RTF, and the gain of each capacity over capacity 1. Writes
bench/results/<date>-<machine>-throughput.{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
from pathlib import Path

import msgspec
from tqdm import tqdm

from bench.harness import TEXTS
from bench.load import StreamRecord, at_concurrency, sse_stream
from bench.machine import Machine, this_machine
from bench.report import Level, fmt, level, voice_line
from bench.stack import Stack
from engine.checkpoint import VoiceShape, resolve, voice_shape
from engine.params import SynthesisParams


class CapacityRun(msgspec.Struct, kw_only=True):
    capacity: int
    levels: list[Level]
    records: list[StreamRecord]


class ThroughputResult(msgspec.Struct, kw_only=True):
    date: str
    machine: Machine
    weights: str
    checkpoint: str
    voice: VoiceShape | None = None  # the built-in voice's prompt lengths (None in results made before)
    device: str
    tokens: int  # raw tokens per request, exactly
    chunk_size: int
    texts: list[str]
    runs: list[CapacityRun]

    def gain(self, capacity: int, concurrency: int) -> float | None:
        """Aggregate throughput at this capacity over capacity 1's, at one concurrency level."""
        by = {(r.capacity, lv.concurrency): lv.audio_per_wall for r in self.runs for lv in r.levels}
        base, this = by.get((1, concurrency)), by.get((capacity, concurrency))
        return this / base if base and this is not None else None


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    ap.add_argument("--capacities", default="1,8", help="slot capacities to compare (default %(default)s)")
    ap.add_argument("--concurrency", default="1,4,8,16", help="levels (default %(default)s)")
    ap.add_argument("--texts", type=int, default=4, help=f"texts cycled through (at most {len(TEXTS)})")
    ap.add_argument("--tokens", type=int, default=60, help="raw T3 tokens per request")
    ap.add_argument("--chunk-size", type=int, default=50)
    ap.add_argument("--device", default=os.environ.get("CHATTERBOX_DEVICE", "cpu"), help="cpu, cuda or cuda:N")
    ap.add_argument("--worker-threads", type=int, default=0, help="per worker; 0: half the cores on a CPU")
    ap.add_argument("--checkpoint", default=os.environ.get("CHATTERBOX_CHECKPOINT", "auto"))
    ap.add_argument("--queue-timeout", type=float, default=900.0,
                    help="broker queue timeout (s): long, so capacity 1 is measured, not refused")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--name", help="file stem (default <date>-<machine>-throughput)")
    ap.add_argument("--tiny", action="store_true", help="smoke size: capacities 1,2, levels 1,2, 12 tokens")
    ap.add_argument("--from-json", type=Path, help="measure nothing: rewrite the Markdown and plot of a result")
    args = ap.parse_args(argv)
    if args.tiny:
        args.capacities, args.concurrency, args.texts, args.tokens = "1,2", "1,2", 2, 12
    args.capacity_list = sorted({int(c) for c in args.capacities.split(",")} | {1})
    args.levels = sorted({int(c) for c in args.concurrency.split(",")})
    return args


def measure(args: argparse.Namespace, checkpoint: str, capacity: int, bar: tqdm) -> tuple[CapacityRun, dict]:
    texts = TEXTS[: args.texts]
    params = [
        SynthesisParams(seed=100 + i, max_new_tokens=args.tokens, chunk_size=args.chunk_size, ignore_stop=True)
        for i in range(len(texts))
    ]
    cpu = args.device == "cpu"
    threads = args.worker_threads or (max(1, (os.cpu_count() or 2) // 2) if cpu else 0)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-cap{capacity}-"))
    stack = Stack(
        workdir, checkpoint, ("t0",), threads=threads, capacity=capacity, device=args.device,
        queue_timeout=args.queue_timeout,
    )  # fmt: skip
    records: list[StreamRecord] = []
    levels: list[Level] = []
    try:
        (url,) = stack.serve(timeout=900)
        health = stack.health
        bar.set_postfix_str(f"capacity {capacity}: warming up")
        sse_stream(url, texts[0], -1, SynthesisParams(seed=1, max_new_tokens=12), 1, True)  # lazy init
        n = len(texts)
        for c in args.levels:
            bar.set_postfix_str(f"capacity {capacity}, concurrency {c}")
            batch, wall = at_concurrency(
                lambda k, c=c: sse_stream(url, texts[k % n], k % n, params[k % n], c, True), c, c, bar.update
            )
            records += batch
            levels.append(level(batch, c, wall))
    finally:
        stack.stop()
    return CapacityRun(capacity=capacity, levels=levels, records=records), health


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.from_json:
        args.name = args.name or args.from_json.stem
        write(msgspec.json.decode(args.from_json.read_bytes(), type=ThroughputResult), args)
        return 0
    checkpoint = resolve(args.checkpoint)
    bar = tqdm(total=len(args.capacity_list) * sum(args.levels), desc="throughput", unit="req")
    runs, health = [], {}
    try:
        for capacity in args.capacity_list:
            run, health = measure(args, checkpoint.path, capacity, bar)
            runs.append(run)
    finally:
        bar.close()
    result = ThroughputResult(
        date=datetime.date.today().isoformat(),
        machine=this_machine(),
        weights=health.get("weights", "unknown"),
        checkpoint=f"{args.checkpoint} → {checkpoint.path}",
        voice=voice_shape(checkpoint.path),
        device=args.device,
        tokens=args.tokens,
        chunk_size=args.chunk_size,
        texts=TEXTS[: args.texts],
        runs=runs,
    )
    write(result, args)
    return 0


def markdown(r: ThroughputResult, plot: str) -> str:
    lines = [
        f"# Throughput {r.date} — {r.machine.describe()}",
        "",
        f"Checkpoint `{r.checkpoint}`, **weights {r.weights}**"
        + (" (the audio is noise; compute is real)" if r.weights == "random" else "")
        + f", device {r.device}, one slot, {r.tokens} raw tokens per request (ignore_stop), chunk_size "
        f"{r.chunk_size}, {len(r.texts)} texts cycled. Each level is one wave of that many concurrent SSE "
        "streams; aggregate = audio seconds delivered per wall second of the wave.",
        *([voice_line(r.voice)] if r.voice is not None else []),
        "",
        "| capacity | concurrency | errors | aggregate audio s / wall s | gain vs capacity 1 "
        "| first audio p50 | p95 | per-stream RTF p50 | p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r.runs:
        for lv in run.levels:
            gain = r.gain(run.capacity, lv.concurrency)
            lines.append(
                f"| {run.capacity} | {lv.concurrency} | {lv.errors} | {fmt(lv.audio_per_wall)} | {fmt(gain, '×')} "
                f"| {fmt(lv.first_audio_p50, ' s')} | {fmt(lv.first_audio_p95, ' s')} | {fmt(lv.rtf_p50)} "
                f"| {fmt(lv.rtf_p95)} |"
            )
    errors = {rec.error for run in r.runs for rec in run.records if rec.error}
    if errors:
        lines += ["", "Errors:", *[f"- {e}" for e in sorted(errors)]]
    lines += ["", f"![throughput and first audio vs concurrency]({plot})", ""]
    return "\n".join(lines)


def write(result: ThroughputResult, args: argparse.Namespace) -> None:
    from bench import plots

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"{result.date}-{result.machine.slug()}-throughput"
    plot = f"{stem}.png"
    plots.throughput(result, args.out / plot)
    (args.out / f"{stem}.json").write_bytes(msgspec.json.format(msgspec.json.encode(result)))
    text = markdown(result, plot)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {args.out / stem}.json, .md and .png")


if __name__ == "__main__":
    raise SystemExit(main())
