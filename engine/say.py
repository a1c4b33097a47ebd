"""`python -m engine.say "TEXT" -o out.wav [--stream] ...`: synthesize in-process and print metrics."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import msgspec
import numpy as np
import soundfile as sf

from engine.audio import SAMPLE_RATE
from engine.cli import add_synthesis_arguments, synthesis_params
from engine.errors import CheckpointError, InvalidInput
from engine.metrics import Metrics
from engine.settings import EngineSettings
from engine.text import check_text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m engine.say", description=__doc__)
    add_synthesis_arguments(p)
    p.add_argument("--stream", action="store_true", help="stream chunk by chunk (default: regular synthesis)")
    p.add_argument("--checkpoint", help="overrides CHATTERBOX_CHECKPOINT")
    p.add_argument("--device", help="overrides CHATTERBOX_DEVICE")
    p.add_argument("--dtype", help="overrides CHATTERBOX_DTYPE")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = sys.stderr if args.json else sys.stdout
    params = synthesis_params(args)
    try:
        settings = EngineSettings.from_env(checkpoint=args.checkpoint, device=args.device, dtype=args.dtype)
        # Bad text or parameters are refused before the model takes its seconds to load.
        check_text(args.text, settings.max_text_chars)
        params.validated()
    except ValueError as exc:  # InvalidInput (field: reason) or a bad CHATTERBOX_* setting
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from engine.models.synthesizer import Engine  # torch: imported only once the input is known good

    try:
        engine = Engine(settings)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if engine.weights == "random":
        print("NOTE: random weights (generated checkpoint): timings are real, the audio is noise.", file=out)
    reference = args.voice.read_bytes() if args.voice else None
    try:
        if args.stream:
            parts = []
            metrics = Metrics(weights=engine.weights)
            for chunk in engine.stream(args.text, params, reference):
                parts.append(chunk.pcm)
                metrics = chunk.metrics
                print(
                    f"chunk {chunk.seq:3d}: {len(chunk.pcm) / SAMPLE_RATE:6.2f} s audio from {chunk.tokens:3d} "
                    f"tokens at {metrics.total_latency:6.2f} s{'  (final)' if chunk.final else ''}",
                    file=out,
                )
            wav = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        else:
            wav, metrics = engine.synthesize(args.text, params, reference)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, wav, SAMPLE_RATE, subtype="PCM_16")
    summary = {
        "first_chunk_latency": metrics.first_chunk_latency,
        "rtf": metrics.rtf,
        "chunks": metrics.chunks,
        "audio_seconds": metrics.audio_seconds,
        "weights": metrics.weights,
        "total_latency": metrics.total_latency,
        "tokens_generated": metrics.tokens_generated,
        "valid_tokens": metrics.valid_tokens,
        "mode": "stream" if args.stream else "regular",
        "output": str(args.output),
    }
    first = "n/a" if metrics.first_chunk_latency is None else f"{metrics.first_chunk_latency:.2f} s"
    rtf = "n/a" if metrics.rtf is None else f"{metrics.rtf:.2f}"
    print(
        f"wrote {args.output}: {metrics.audio_seconds:.2f} s audio, {metrics.chunks} chunk(s), first audio {first}, "
        f"RTF {rtf}, {metrics.valid_tokens}/{metrics.tokens_generated} valid tokens, weights {metrics.weights}",
        file=out,
    )
    if args.json:
        print(msgspec.json.encode(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
