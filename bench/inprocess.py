"""`python -m bench.inprocess`: streaming vs regular synthesis of the same tokens, in one process, one run.

Both modes use the same seed, so T3 samples the same tokens and S3Gen draws the same noise; the only
difference is chunked streaming. Prints medians over --reps and their ratio, and one JSON line.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import msgspec
import numpy as np
import torch

from bench.machine import cpu_name
from engine.checkpoint import voice_shape
from engine.eval.quality import snr_db
from engine.models.synthesizer import Engine
from engine.params import SynthesisParams
from engine.settings import EngineSettings

TEXT = "Hello! This is Chatterbox, streaming speech as it is generated, one chunk at a time."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    ap.add_argument("--tokens", type=int, default=100, help="raw T3 tokens per run (max_new_tokens)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--first-chunk-size", type=int, default=None, help="default: the engine's setting")
    ap.add_argument("--chunk-size", type=int, default=SynthesisParams().chunk_size)
    args = ap.parse_args(argv)
    engine = Engine(EngineSettings.from_env())
    warm = SynthesisParams(seed=1, max_new_tokens=20)
    list(engine.stream(TEXT, warm))
    engine.synthesize(TEXT, warm)
    params = SynthesisParams(
        seed=args.seed, max_new_tokens=args.tokens, first_chunk_size=args.first_chunk_size, chunk_size=args.chunk_size
    )
    rows = []
    for rep in range(args.reps):
        chunks = list(engine.stream(TEXT, params))
        wav, reg = engine.synthesize(TEXT, params)
        st = chunks[-1].metrics
        streamed = np.concatenate([c.pcm for c in chunks])
        rows.append(
            {
                "stream_first": st.first_chunk_latency,
                "stream_rtf": st.rtf,
                "regular_first": reg.first_chunk_latency,
                "regular_rtf": reg.rtf,
                "rtf_ratio": st.rtf / reg.rtf,
                "chunks": st.chunks,
                "valid_tokens": st.valid_tokens,
                "snr_db": snr_db(wav, streamed) if not engine.settings.watermark else None,
            }
        )
        print(
            f"rep {rep + 1}: "
            + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
            file=sys.stderr,
        )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if rows[0][k] is not None}
    # This host's speed drifts run to run; the spread of the per-rep ratio shows how far to trust it.
    spread = {"rtf_ratio_min": min(r["rtf_ratio"] for r in rows), "rtf_ratio_max": max(r["rtf_ratio"] for r in rows)}
    s = engine.settings
    result = {
        "machine": cpu_name(),
        "cores": torch.get_num_threads(),
        "device": s.device,
        "dtype": str(engine.dtype).removeprefix("torch."),
        "weights": engine.weights,
        "tokens": args.tokens,
        "reps": args.reps,
        "first_chunk_size": params.first_chunk_size or s.first_chunk_size,
        "chunk_size": params.chunk_size,
        "flow_left_tokens": s.flow_left_tokens,
        "flow_holdback_tokens": s.flow_holdback_tokens,
        "voice": msgspec.to_builtins(voice_shape(engine.checkpoint.path)),
        "median": med,
        "spread": spread,
    }
    print(
        f"{result['machine']} ({result['cores']} threads, {result['dtype']}, {result['weights']} weights): "
        f"first audio streaming {med['stream_first']:.2f} s vs regular {med['regular_first']:.2f} s; "
        f"RTF streaming {med['stream_rtf']:.2f} vs regular {med['regular_rtf']:.2f} "
        f"(ratio {med['rtf_ratio']:.3f}, per rep "
        f"{spread['rtf_ratio_min']:.3f}-{spread['rtf_ratio_max']:.3f}); {med['chunks']:.0f} chunks",
        file=sys.stderr,
    )
    print(msgspec.json.encode(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
