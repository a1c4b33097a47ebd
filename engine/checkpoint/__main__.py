"""`python -m engine.checkpoint [SPEC]`: resolve (download or generate) once, print where it is."""

from __future__ import annotations

import logging
import sys

from engine.checkpoint import resolve
from engine.errors import CheckpointError
from engine.settings import EngineSettings


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = EngineSettings.from_env()
    spec = sys.argv[1] if len(sys.argv) > 1 else settings.checkpoint
    try:
        ckpt = resolve(spec, settings.cache_dir or None)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint {ckpt.path} (weights {ckpt.weights}, from {ckpt.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
