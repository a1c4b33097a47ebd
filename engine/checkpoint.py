"""Resolve `CHATTERBOX_CHECKPOINT` to a directory of the five checkpoint files, generating one if asked.

Modes: `auto` (local hub cache, else a hub download, else a generated checkpoint with a loud warning),
`hub` (cache or download, never a fallback), a directory, and `random` / `random:SEED` (generated once
under the cache directory with the real architectures and seeded random weights). Every mode ends in
the same loader, `ChatterboxTTS.from_local`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import msgspec

from engine.errors import CheckpointError

log = logging.getLogger(__name__)

REPO_ID = "ResembleAI/chatterbox"
FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
MARKER = "weights.json"  # written into generated checkpoints only
# The generated built-in voice: a short synthetic reference keeps the S3Gen prompt (and its cost per
# flow call) small on CPUs. A real conds.pt carries a ~10 s prompt.
SYNTHETIC_VOICE_SECONDS = 1.0


class Checkpoint(msgspec.Struct, frozen=True):
    path: str
    weights: str  # "real" or "random"
    source: str  # how it was found: cache, download, directory, generated


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatterbox-streaming"


def resolve(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> Checkpoint:
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    spec = spec.strip()
    if spec == "auto":
        try:
            return _from_hub(allow_download=True)
        except CheckpointError as exc:
            banner = "!" * 78
            log.warning(
                "\n%s\nNO REAL CHATTERBOX WEIGHTS: %s\nFalling back to a GENERATED checkpoint with RANDOM "
                "weights: compute cost is real, the audio is noise.\n%s",
                banner,
                exc,
                banner,
            )
            return _random(0, cache)
    if spec == "hub":
        return _from_hub(allow_download=True)
    if spec == "random" or spec.startswith("random:"):
        seed_text = spec.partition(":")[2] or "0"
        try:
            seed = int(seed_text)
        except ValueError:
            raise CheckpointError(f"random:SEED needs an integer seed, got {seed_text!r}") from None
        return _random(seed, cache)
    return _from_directory(Path(spec).expanduser())


def _from_directory(path: Path) -> Checkpoint:
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint directory {path} does not exist; set CHATTERBOX_CHECKPOINT to a directory holding "
            f"{', '.join(FILES)}, or to auto, hub or random"
        )
    missing = [name for name in FILES if not (path / name).is_file()]
    # conds.pt is optional upstream, but without it there is no default voice; require it.
    if missing:
        raise CheckpointError(f"checkpoint directory {path} is missing {', '.join(missing)}")
    weights = "real"
    marker = path / MARKER
    if marker.is_file():
        weights = json.loads(marker.read_text()).get("weights", "real")
    return Checkpoint(str(path), weights, "directory")


def _from_hub(allow_download: bool) -> Checkpoint:
    from huggingface_hub import hf_hub_download

    try:
        paths = [hf_hub_download(REPO_ID, name, local_files_only=True) for name in FILES]
        return Checkpoint(str(Path(paths[0]).parent), "real", "cache")
    except Exception:
        if not allow_download:
            raise
    try:
        # The hub client shows its own progress bars while downloading.
        paths = [hf_hub_download(REPO_ID, name) for name in FILES]
    except Exception as exc:
        raise CheckpointError(
            f"could not download {REPO_ID} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "Copy the five files to a directory and set CHATTERBOX_CHECKPOINT to it, or set "
            "CHATTERBOX_CHECKPOINT=random to run on generated random weights"
        ) from exc
    return Checkpoint(str(Path(paths[0]).parent), "real", "download")


def _random(seed: int, cache: Path) -> Checkpoint:
    target = cache / f"random-{seed}"
    if (target / MARKER).is_file() and all((target / n).is_file() for n in FILES):
        return Checkpoint(str(target), "random", "generated")
    cache.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename: an interrupted generation leaves only a temp dir that
    # is never loaded (and is swept next time).
    for stale in cache.glob(f".random-{seed}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".random-{seed}-", dir=cache))
    try:
        from engine.generate import write_random_checkpoint

        write_random_checkpoint(tmp, seed)
        (tmp / MARKER).write_text(json.dumps({"weights": "random", "seed": seed}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MARKER).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Checkpoint(str(target), "random", "generated")
