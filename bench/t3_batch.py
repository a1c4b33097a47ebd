"""`python -m bench.t3_batch`: T3 tokens per second, streams decoded one after another vs as one batch.

The same seeded streams both ways (so the same tokens: the batch samples exactly what each stream
samples alone), prefill included, in this process. Only T3: what continuous batching buys the T3
worker before S3Gen and the pipeline are involved. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import msgspec
import torch

from bench.machine import this_machine
from engine.models.t3.batch import BatchStream, T3Batch
from engine.params import SynthesisParams
from engine.settings import EngineSettings

TEXT = "Streaming lets a voice agent start talking while the rest of its answer is still being made."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.t3_batch", description=__doc__)
    ap.add_argument("--streams", default="1,4,8", help="batch sizes to measure")
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--checkpoint", default=os.environ.get("CHATTERBOX_CHECKPOINT", "random:0"))
    args = ap.parse_args(argv)
    from engine.models.synthesizer import Engine

    engine = Engine(EngineSettings.from_env(checkpoint=args.checkpoint, watermark=False), role="t3")
    cond = engine.conditionals(None, 0.5).t3
    ids = engine.text_ids(TEXT)
    stop = engine.model.t3.hp.stop_speech_token

    def decode(seeds: range) -> int:
        """The streams of these seeds as one batch: the tokens sampled, the stop token not counted."""
        batch = T3Batch(engine.model.t3)
        for seed in seeds:
            stream = BatchStream(
                str(seed), SynthesisParams(seed=seed), args.tokens, torch.Generator().manual_seed(seed)
            )
            batch.add(stream, ids, cond)
        count = 0
        while len(batch):
            count += sum(1 for token in batch.step().values() if token != stop)
        return count

    def one_by_one(n: int) -> int:
        return sum(decode(range(seed, seed + 1)) for seed in range(n))

    def batched(n: int) -> int:
        return decode(range(n))

    batched(2)  # warm-up
    rows = []
    for n in [int(x) for x in args.streams.split(",")]:
        for _ in range(args.reps):
            t0 = time.monotonic()
            a = one_by_one(n)
            t1 = time.monotonic()
            b = batched(n)
            t2 = time.monotonic()
            assert a == b, (a, b)  # same seeds, same tokens
            rows.append({"streams": n, "tokens": a, "sequential_tps": a / (t1 - t0), "batched_tps": b / (t2 - t1)})
            print({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()})
    result = {
        "machine": this_machine().describe(),
        "dtype": str(engine.dtype).replace("torch.", ""),
        "tokens_per_stream": args.tokens,
        "by_streams": {
            n: {
                "sequential_tps": statistics.median(r["sequential_tps"] for r in rows if r["streams"] == n),
                "batched_tps": statistics.median(r["batched_tps"] for r in rows if r["streams"] == n),
                "ratio": statistics.median(r["batched_tps"] / r["sequential_tps"] for r in rows if r["streams"] == n),
            }
            for n in sorted({r["streams"] for r in rows})
        },
    }
    for n, v in result["by_streams"].items():
        print(f"{n} streams: sequential {v['sequential_tps']:.1f} tok/s, batched {v['batched_tps']:.1f} tok/s, "
              f"ratio {v['ratio']:.2f}")  # fmt: skip
    print(msgspec.json.encode(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
