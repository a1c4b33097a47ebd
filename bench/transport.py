"""`python -m bench.transport`: time to first audio through each way in, and what each hop adds per chunk.

One stack (broker, one T3 + S3Gen slot, a gateway) and one in-process engine, the same text, seed and
token budget, alternating rep by rep so machine noise hits all three:
- SSE: `POST /synthesize-stream` with a real HTTP client (gateway.client);
- ZeroMQ: the broker client, as an internal service would use it;
- in-process: the engine in this process (no pipeline: T3 then S3Gen per chunk, all cores).
Per chunk, "transit" is arrival at the client minus the end of the chunk's vocoding (CLOCK_MONOTONIC,
one host): broker only for ZeroMQ, broker + gateway + HTTP for SSE. Their difference is the gateway's
added time per chunk. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from bench.inprocess import TEXT
from bench.machine import cpu_name
from bench.stack import Stack
from broker.client import Client
from engine.checkpoint import resolve
from engine.params import SynthesisParams
from engine.settings import EngineSettings
from gateway import client as sse


def zmq_run(client: Client, params: SynthesisParams) -> tuple[float, list[float]]:
    started = time.monotonic()
    first, transit = None, []
    for chunk in client.stream(TEXT, params=params):
        now = time.monotonic()
        if first is None and len(chunk.pcm):
            first = now - started
        transit.append(now - chunk.s3gen_span.end)
    assert first is not None
    return first, transit


def sse_run(url: str, params: SynthesisParams) -> tuple[float, list[float]]:
    fields = msgspec.structs.asdict(params) | {"text": TEXT}
    result = sse.stream(url, fields)
    assert result.first_audio is not None
    return result.first_audio, [c.arrived - c.metrics["s3gen_span"][1] for c in result.chunks]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__)
    ap.add_argument("--tokens", type=int, default=60, help="raw T3 tokens per run (max_new_tokens)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--worker-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--checkpoint", default=os.environ.get("CHATTERBOX_CHECKPOINT", "random:0"))
    args = ap.parse_args(argv)
    checkpoint = resolve(args.checkpoint)
    params = SynthesisParams(seed=args.seed, max_new_tokens=args.tokens)
    warm = SynthesisParams(seed=1, max_new_tokens=20)

    from engine.synthesizer import Engine

    engine = Engine(EngineSettings.from_env(checkpoint=checkpoint.path, watermark=False))
    stack = Stack(Path(tempfile.mkdtemp(prefix="bench-transport-")), checkpoint.path, ("bench",),
                  threads=args.worker_threads)  # fmt: skip
    rows: list[dict] = []
    try:
        url = stack.add_gateway()
        sse.wait_healthy(url, 600)
        with Client(stack.settings, chunk_timeout=300) as client:
            sse_run(url, warm), zmq_run(client, warm), list(engine.stream(TEXT, warm))
            for _ in range(args.reps):
                sse_first, sse_transit = sse_run(url, params)
                zmq_first, zmq_transit = zmq_run(client, params)
                local = list(engine.stream(TEXT, params))
                rows.append(
                    {
                        "sse_first": sse_first,
                        "zmq_first": zmq_first,
                        "inprocess_first": local[-1].metrics.first_chunk_latency,
                        "sse_transit_ms": 1000 * statistics.median(sse_transit),
                        "zmq_transit_ms": 1000 * statistics.median(zmq_transit),
                    }
                )
                print({k: round(v, 3) for k, v in rows[-1].items()})
    finally:
        stack.stop()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "weights": checkpoint.weights,
        "tokens": args.tokens,
        "reps": args.reps,
        "medians": med,
        "sse_over_zmq_first": statistics.median(r["sse_first"] / r["zmq_first"] for r in rows),
        "sse_over_inprocess_first": statistics.median(r["sse_first"] / r["inprocess_first"] for r in rows),
        "gateway_added_ms_per_chunk": statistics.median(r["sse_transit_ms"] - r["zmq_transit_ms"] for r in rows),
    }
    print(
        f"\n{result['machine']}, weights {result['weights']}, {args.tokens} raw tokens, medians of {args.reps}\n"
        f"first audio: SSE {med['sse_first']:.3f} s, ZeroMQ client {med['zmq_first']:.3f} s, "
        f"in-process {med['inprocess_first']:.3f} s (ratios SSE/ZeroMQ {result['sse_over_zmq_first']:.3f}, "
        f"SSE/in-process {result['sse_over_inprocess_first']:.3f})\n"
        f"per chunk, vocoder → client: SSE {med['sse_transit_ms']:.2f} ms, ZeroMQ {med['zmq_transit_ms']:.2f} ms; "
        f"the gateway adds {result['gateway_added_ms_per_chunk']:.2f} ms"
    )
    print(msgspec.json.encode(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
