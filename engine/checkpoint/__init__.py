"""Resolve `CHATTERBOX_CHECKPOINT` to a directory of the five checkpoint files, generating one if asked.

Modes: `auto` (local hub cache, else a hub download, else a generated checkpoint with a loud warning),
`hub` (cache or download, never a fallback), a directory, and `random` / `random:SEED` (generated once
under the cache directory with the real architectures and seeded random weights). Every mode ends in
the same loader, `ChatterboxTTS.from_local`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
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
    _probe_hub()
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


def _probe_hub(timeout: float = 5.0) -> None:
    """Fail in seconds, not after the hub client's retries with backoff, when the hub is unreachable."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise CheckpointError(
            f"{REPO_ID} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. "
            "Copy the five files to a directory and set CHATTERBOX_CHECKPOINT to it, or set "
            "CHATTERBOX_CHECKPOINT=random to run on generated random weights"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/api/models/{REPO_ID}", method="HEAD"), timeout=timeout
        )
    except urllib.error.HTTPError:
        return  # the hub answered; let the download report what it says
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"the Hugging Face hub at {endpoint} is unreachable ({exc}). Copy the five files to a directory "
            "and set CHATTERBOX_CHECKPOINT to it, or set CHATTERBOX_CHECKPOINT=random to run on generated "
            "random weights"
        ) from exc


def _random(seed: int, cache: Path) -> Checkpoint:
    target = cache / f"random-{seed}"
    if _complete(target):
        return Checkpoint(str(target), "random", "generated")
    cache.mkdir(parents=True, exist_ok=True)
    # Workers of one host start together: the lock makes one generate while the others wait for it.
    with open(cache / f".random-{seed}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(target):
            _generate(seed, cache, target)
    return Checkpoint(str(target), "random", "generated")


def _complete(target: Path) -> bool:
    return (target / MARKER).is_file() and all((target / n).is_file() for n in FILES)


def _generate(seed: int, cache: Path, target: Path) -> None:
    # Build in a sibling temp dir and rename: an interrupted generation leaves only a temp dir that
    # is never loaded (and is swept here, under the lock, next time).
    for stale in cache.glob(f".random-{seed}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        shutil.rmtree(target)  # incomplete: a copy someone damaged by hand
    tmp = Path(tempfile.mkdtemp(prefix=f".random-{seed}-", dir=cache))
    try:
        from engine.generate import write_random_checkpoint

        write_random_checkpoint(tmp, seed)
        (tmp / MARKER).write_text(json.dumps({"weights": "random", "seed": seed}))
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    """`python -m engine.checkpoint [SPEC]`: resolve (download or generate) once, print where it is."""
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from engine.settings import EngineSettings

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
