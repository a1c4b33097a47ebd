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
from pathlib import Path

import msgspec

from bench.inprocess import TEXT
from bench.load import inprocess, sse_stream, zmq_stream
from bench.machine import cpu_name
from bench.stack import Stack
from broker.client import Client
from engine.checkpoint import resolve, voice_shape
from engine.params import SynthesisParams
from engine.settings import EngineSettings


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

    from engine.models.synthesizer import Engine

    engine = Engine(EngineSettings.from_env(checkpoint=checkpoint.path, watermark=False))
    stack = Stack(Path(tempfile.mkdtemp(prefix="bench-transport-")), checkpoint.path, ("bench",),
                  threads=args.worker_threads)  # fmt: skip
    rows: list[dict] = []
    try:
        (url,) = stack.serve(timeout=600)
        with Client(stack.settings, chunk_timeout=300) as client:
            sse_stream(url, TEXT, 0, warm, 1, local=True), zmq_stream(client, TEXT, 0, warm)
            inprocess(engine, TEXT, 0, warm)
            for _ in range(args.reps):
                over_sse = sse_stream(url, TEXT, 0, params, 1, local=True)
                over_zmq = zmq_stream(client, TEXT, 0, params)
                local = inprocess(engine, TEXT, 0, params)
                assert over_sse.error is None and over_zmq.error is None, (over_sse.error, over_zmq.error)
                rows.append(
                    {
                        "sse_first": over_sse.first_audio,
                        "zmq_first": over_zmq.first_audio,
                        "inprocess_first": local.first_audio,
                        "sse_transit_ms": statistics.median(over_sse.transit_ms),
                        "zmq_transit_ms": statistics.median(over_zmq.transit_ms),
                    }
                )
                print({k: round(v, 3) for k, v in rows[-1].items()})
    finally:
        stack.stop()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "weights": checkpoint.weights,
        "voice": msgspec.to_builtins(voice_shape(checkpoint.path)),
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
