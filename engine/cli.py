"""Command-line pieces shared by the in-process CLI and the ZeroMQ client's CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.params import SynthesisParams


def add_synthesis_arguments(p: argparse.ArgumentParser) -> None:
    """TEXT, -o, --voice and every SynthesisParams field as options with the struct's defaults."""
    d = SynthesisParams()
    p.add_argument("text")
    p.add_argument("-o", "--output", type=Path, default=Path("out.wav"), help="WAV file to write")
    p.add_argument("--voice", type=Path, help="reference audio (wav, flac, ogg, mp3) to clone")
    p.add_argument("--chunk-size", type=int, default=d.chunk_size)
    p.add_argument("--first-chunk-size", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--exaggeration", type=float, default=d.exaggeration)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--cfg-weight", type=float, default=d.cfg_weight)
    p.add_argument("--json", action="store_true", help="end with one line of JSON metrics")


def synthesis_params(args: argparse.Namespace) -> SynthesisParams:
    return SynthesisParams(
        exaggeration=args.exaggeration,
        temperature=args.temperature,
        cfg_weight=args.cfg_weight,
        chunk_size=args.chunk_size,
        first_chunk_size=args.first_chunk_size,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
