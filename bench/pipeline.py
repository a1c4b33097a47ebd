"""`python -m bench.pipeline`: the two-process pipeline vs one process doing T3 then S3Gen per chunk.

Same text, seed and token budget in the same run, alternating rep by rep so machine noise hits both:
- pipelined: a broker and one slot (T3 and S3Gen worker processes), driven through the ZeroMQ client;
- sequential: the in-process engine (the seed's reference design: generate a chunk, vocode it, repeat).
Reports medians of first-chunk latency (client side and as the worker measured it), RTF, their ratios,
and how long S3Gen's work on chunk N overlapped T3's work on chunk N+1. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
from pathlib import Path

import msgspec

from bench.inprocess import TEXT
from bench.machine import cpu_name
from bench.stack import Stack, wait_for
from broker.client import Client
from engine.checkpoint import resolve, voice_shape
from engine.params import SynthesisParams
from engine.settings import EngineSettings


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    ap.add_argument("--tokens", type=int, default=100, help="raw T3 tokens per run (max_new_tokens)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--worker-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--sequential-threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--checkpoint", default=os.environ.get("CHATTERBOX_CHECKPOINT", "random:0"))
    args = ap.parse_args(argv)
    checkpoint = resolve(args.checkpoint)
    params = SynthesisParams(seed=args.seed, max_new_tokens=args.tokens)
    warm = SynthesisParams(seed=1, max_new_tokens=20)

    from engine.models.synthesizer import Engine

    settings = EngineSettings.from_env(checkpoint=checkpoint.path, threads=args.sequential_threads, watermark=False)
    engine = Engine(settings)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    stack = Stack(workdir, checkpoint.path, ("bench",), threads=args.worker_threads)
    rows: list[dict] = []
    try:
        with Client(stack.settings, chunk_timeout=300) as client:
            wait_for(lambda: any(s.live for s in client.stats().slots), 600, "the slot to load", 0.5)
            list(client.stream(TEXT, params=warm))
            list(engine.stream(TEXT, warm))
            for _ in range(args.reps):
                chunks = list(client.stream(TEXT, params=params))
                local = list(engine.stream(TEXT, params))
                worker = chunks[-1].metrics
                overlap = sum(
                    max(0.0, min(a.s3gen_span.end, b.t3_span.end) - max(a.s3gen_span.start, b.t3_span.start))
                    for a, b in itertools.pairwise(chunks)
                )
                rows.append(
                    {
                        "pipe_first_client": next(c.latency for c in chunks if len(c.pcm)),
                        "pipe_first_worker": worker.first_chunk_latency,
                        "pipe_rtf": chunks[-1].latency / worker.audio_seconds,
                        "pipe_overlap_s": overlap,
                        "pipe_valid_tokens": worker.valid_tokens,
                        "seq_first": local[-1].metrics.first_chunk_latency,
                        "seq_rtf": local[-1].metrics.rtf,
                        "seq_valid_tokens": local[-1].metrics.valid_tokens,
                        "chunks": len(chunks),
                        "audio_seconds": worker.audio_seconds,
                    }
                )
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()})
    finally:
        stack.stop()
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "weights": checkpoint.weights,
        "voice": msgspec.to_builtins(voice_shape(checkpoint.path)),
        "dtype": str(engine.dtype).replace("torch.", ""),
        "tokens": args.tokens,
        "reps": args.reps,
        "worker_threads": args.worker_threads,
        "sequential_threads": args.sequential_threads,
        "medians": {k: median(rows, k) for k in rows[0]},
        "rtf_ratio_pipelined_over_sequential": statistics.median(r["pipe_rtf"] / r["seq_rtf"] for r in rows),
        "first_ratio_client_over_inprocess": statistics.median(r["pipe_first_client"] / r["seq_first"] for r in rows),
    }
    m = result["medians"]
    print(
        f"\n{result['machine']}, weights {result['weights']}, {result['dtype']}, {args.tokens} raw tokens, "
        f"medians of {args.reps}\n"
        f"pipelined ({args.worker_threads}+{args.worker_threads} threads): first chunk {m['pipe_first_client']:.2f} s "
        f"via client ({m['pipe_first_worker']:.2f} s at the worker), RTF {m['pipe_rtf']:.2f}, "
        f"S3Gen/T3 overlap {m['pipe_overlap_s']:.2f} s\n"
        f"sequential ({args.sequential_threads} threads, in-process): first chunk {m['seq_first']:.2f} s, "
        f"RTF {m['seq_rtf']:.2f}\n"
        f"ratios: RTF pipelined/sequential {result['rtf_ratio_pipelined_over_sequential']:.2f}, "
        f"first chunk client/in-process {result['first_ratio_client_over_inprocess']:.2f}"
    )
    print(msgspec.json.encode(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
