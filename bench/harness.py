"""`python -m bench` (`make bench`): first-audio latency, RTF and concurrency, the way users see them.

Starts the stack (broker, one T3 + S3Gen slot per --slots, a gateway) on the configured checkpoint,
or measures a running gateway with --url. Then, on a fixed set of texts with fixed seeds:
1. for each text in turn: an SSE stream, the same through the ZeroMQ client, regular synthesis over
   HTTP, and the in-process engine (one process, T3 then S3Gen per chunk: the seed's design) — so the
   comparisons share texts, seeds and machine noise;
2. SSE streams at each further concurrency level.
Writes bench/results/<date>-<machine>.{json,md} and PNG plots, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import urllib.parse
from pathlib import Path

import msgspec
from tqdm import tqdm

from bench import plots
from bench.load import StreamRecord, at_concurrency, inprocess, regular, sse_stream, zmq_stream
from bench.machine import this_machine
from bench.report import BenchResult, compare, level, markdown, transit, valid_share
from bench.stack import Stack
from broker.client import Client
from engine.checkpoint import resolve, voice_shape
from engine.params import SynthesisParams
from engine.settings import WorkerSettings
from gateway import client as sse

TEXTS = [
    "Hello! This is Chatterbox, streaming speech as it is generated.",
    "The quick brown fox jumps over the lazy dog, and then it takes a well deserved nap.",
    "Streaming lets a voice agent start talking while the rest of its answer is still being made.",
    "Numbers such as 42 and 1999 are read aloud, as are dates like the fourth of July.",
    "A short one.",
    "Latency is the time between asking for speech and hearing its first sound.",
    "Real-time factor compares the time spent generating audio with the length of that audio.",
    "Every chunk should start exactly where the previous one ended, with no click and no gap.",
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--url", help="measure this running gateway instead of starting a stack")
    ap.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels (default %(default)s)")
    ap.add_argument("--requests", type=int, default=4, help="SSE requests per level, at least the level")
    ap.add_argument("--texts", type=int, default=4, help=f"texts in the comparison set (at most {len(TEXTS)})")
    ap.add_argument("--tokens", type=int, default=80, help="max_new_tokens per request")
    ap.add_argument("--chunk-size", type=int, default=50)
    ap.add_argument("--slots", type=int, default=1, help="slots to start (GPUs: one per GPU)")
    ap.add_argument("--capacity", type=int, default=WorkerSettings().capacity,
                    help="jobs per slot at once (default %(default)s; bench.throughput compares)")  # fmt: skip
    ap.add_argument("--device", default=os.environ.get("CHATTERBOX_DEVICE", "cpu"),
                    help="cpu, cuda (slot i on GPU i) or cuda:N")  # fmt: skip
    ap.add_argument("--worker-threads", type=int, default=0, help="per worker; 0: half the cores on a CPU")
    ap.add_argument("--checkpoint", default=os.environ.get("CHATTERBOX_CHECKPOINT", "auto"))
    ap.add_argument("--no-sequential", action="store_true", help="skip the in-process comparison")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--name", help="file stem (default <date>-<machine>)")
    ap.add_argument("--tiny", action="store_true", help="smoke size: 2 texts, 12 tokens, levels 1,2")
    ap.add_argument("--from-json", type=Path, help="measure nothing: rewrite the Markdown and plots of a result")
    args = ap.parse_args(argv)
    if args.tiny:
        args.texts, args.tokens, args.requests, args.concurrency = 2, 12, 2, "1,2"
    args.levels = sorted({int(c) for c in args.concurrency.split(",")})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.from_json:
        args.name = args.name or args.from_json.stem
        write(msgspec.json.decode(args.from_json.read_bytes(), type=BenchResult), args)
        return 0
    machine = this_machine()
    texts = TEXTS[: args.texts]
    params = [SynthesisParams(seed=100 + i, max_new_tokens=args.tokens, chunk_size=args.chunk_size) for i in
              range(len(texts))]  # fmt: skip
    stack: Stack | None = None
    engine = None
    checkpoint_label = args.url or args.checkpoint
    if args.url:
        url = args.url.rstrip("/")
        local = urllib.parse.urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")
    else:
        checkpoint = resolve(args.checkpoint)
        checkpoint_label = f"{args.checkpoint} → {checkpoint.path}"
        cpu = args.device == "cpu"
        threads = args.worker_threads or (max(1, (os.cpu_count() or 2) // 2) if cpu else 0)
        slots = tuple(f"b{i}" for i in range(args.slots))
        workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        stack = Stack(workdir, checkpoint.path, slots, threads=threads, capacity=args.capacity, device=args.device)
        url, local = stack.add_gateway(), True
    later = [c for c in args.levels if c > 1]
    per_level = {c: max(c, args.requests) for c in later}
    ways = 2 + (stack is not None) + (not args.no_sequential and stack is not None)
    bar = tqdm(total=ways * len(texts) + sum(per_level.values()), desc="bench", unit="req")
    records: list[StreamRecord] = []
    try:
        health = sse.wait_healthy(url, 900)
        if stack is not None and not args.no_sequential:
            from engine.models.synthesizer import Engine
            from engine.settings import EngineSettings

            device = "cuda:0" if args.device == "cuda" else args.device
            settings = EngineSettings.from_env(checkpoint=checkpoint.path, device=device, watermark=False)
            engine = Engine(settings)
        client = Client(stack.settings, chunk_timeout=600) if stack is not None else None
        warm = SynthesisParams(seed=1, max_new_tokens=12)
        sse_stream(url, texts[0], -1, warm, 1, local)  # first calls pay for lazy init; not measured
        if client is not None:
            zmq_stream(client, texts[0], -1, warm)
        if engine is not None:
            inprocess(engine, texts[0], -1, warm)
        bar.set_postfix_str("comparisons at concurrency 1")
        for i, text in enumerate(texts):
            records.append(sse_stream(url, text, i, params[i], 1, local))
            bar.update()
            if client is not None:
                records.append(zmq_stream(client, text, i, params[i]))
                bar.update()
            records.append(regular(url, text, i, params[i]))
            bar.update()
            if engine is not None:
                records.append(inprocess(engine, text, i, params[i]))
                bar.update()
        walls = {1: sum(r.total for r in records if r.way == "sse")}
        n = len(texts)
        for c in later:
            bar.set_postfix_str(f"concurrency {c}")
            batch, walls[c] = at_concurrency(
                lambda k, c=c: sse_stream(url, texts[k % n], k % n, params[k % n], c, local), per_level[c], c,
                bar.update,
            )  # fmt: skip
            records += batch
        if client is not None:
            client.close()
    finally:
        bar.close()
        if stack is not None:
            stack.stop()
    by = {way: [r for r in records if r.way == way] for way in ("sse", "zmq", "regular", "inprocess")}
    sse_at = {c: [r for r in by["sse"] if r.concurrency == c] for c in walls}
    result = BenchResult(
        date=datetime.date.today().isoformat(),
        machine=machine,
        weights=health.get("weights", "unknown"),
        checkpoint=checkpoint_label,
        voice=voice_shape(checkpoint.path) if stack is not None else None,
        device=args.device if stack is not None else "remote",
        slots=health.get("live_slots", 0),
        capacity=args.capacity if stack is not None else 0,
        tokens=args.tokens,
        texts=texts,
        valid_token_share=valid_share(by["sse"] + by["zmq"]),
        levels=[level(sse_at[c], c, walls[c]) for c in sorted(walls) if c in args.levels],
        transit=transit(by["sse"], by["zmq"]),
        pipelined_vs_sequential=compare(sse_at.get(1, []), by["inprocess"]) if by["inprocess"] else None,
        regular_vs_streaming=compare(by["regular"], sse_at.get(1, [])),
        records=records,
    )
    write(result, args)
    return 0  # refused or failed requests are results too: counted per level and listed in the report


def write(result: BenchResult, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"{result.date}-{result.machine.slug()}"
    pngs = {"latency vs concurrency": f"{stem}-latency.png", "RTF vs concurrency": f"{stem}-rtf.png"}
    plots.latency(result, args.out / pngs["latency vs concurrency"])
    plots.rtf(result, args.out / pngs["RTF vs concurrency"])
    timed = next((r for r in result.records if r.way == "sse" and r.timeline), None)
    if timed is not None:
        pngs = {"T3 / S3Gen timeline": f"{stem}-timeline.png", **pngs}
        plots.timeline(timed, result, args.out / pngs["T3 / S3Gen timeline"])
    (args.out / f"{stem}.json").write_bytes(msgspec.json.format(msgspec.json.encode(result)))
    text = markdown(result, pngs)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {args.out / stem}.json, .md and {len(pngs)} plots")
