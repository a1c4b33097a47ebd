"""Resolve `CHATTERBOX_CHECKPOINT` to a directory of the five checkpoint files, generating one if asked.

Modes: `auto` (local hub cache, else a hub download, else a generated checkpoint with a loud warning),
`hub` (cache or download, never a fallback), a directory, and `random` / `random:SEED` / `random:SEED:Ns`
(generated once under the cache directory with the real architectures and seeded random weights, and a
built-in voice made from an N-second synthetic reference, 10 s by default). Every mode ends in the same
loader, `ChatterboxTTS.from_local`.
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
from engine.metrics import Weights

log = logging.getLogger(__name__)

REPO_ID = "ResembleAI/chatterbox"
FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
MARKER = "weights.json"  # written into generated checkpoints only
# Bumped whenever generated files change, so a cache made by an older generator is regenerated, not used.
# 2: the built-in voice comes from a 10 s reference (it was 1 s), the size of a real voice.
GENERATOR_VERSION = 2
# A real voice (Chatterbox's own conds.pt, or a user's 5-10 s upload) fills S3Gen's 10 s prompt window
# and T3's 150 prompt tokens; a shorter generated voice would flatter every figure.
DEFAULT_VOICE_SECONDS = 10.0


class Checkpoint(msgspec.Struct, frozen=True):
    path: str
    weights: Weights
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
            return _random(0, DEFAULT_VOICE_SECONDS, cache)
    if spec == "hub":
        return _from_hub(allow_download=True)
    if spec == "random" or spec.startswith("random:"):
        seed, voice_seconds = parse_random(spec)
        return _random(seed, voice_seconds, cache)
    return _from_directory(Path(spec).expanduser())


def parse_random(spec: str) -> tuple[int, float]:
    """`random`, `random:SEED` or `random:SEED:Ns` -> (seed, built-in voice seconds)."""
    _, _, rest = spec.partition(":")
    seed_text, _, voice_text = rest.partition(":")
    try:
        seed = int(seed_text or "0")
    except ValueError:
        raise CheckpointError(f"random:SEED needs an integer seed, got {seed_text!r}") from None
    if not voice_text:
        return seed, DEFAULT_VOICE_SECONDS
    try:
        seconds = float(voice_text.removesuffix("s"))
    except ValueError:
        seconds = 0.0
    if not (voice_text.endswith("s") and 1.0 <= seconds <= 60.0):
        raise CheckpointError(
            f"random:SEED:Ns needs the built-in voice's length in seconds, 1s to 60s, got {voice_text!r}"
        )
    return seed, seconds


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
    weights: Weights = "real"
    marker = path / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("weights") == "random":
        weights = "random"
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


def _random(seed: int, voice_seconds: float, cache: Path) -> Checkpoint:
    name = f"random-{seed}" if voice_seconds == DEFAULT_VOICE_SECONDS else f"random-{seed}-voice{voice_seconds:g}s"
    target = cache / name
    if _complete(target):
        return Checkpoint(str(target), "random", "generated")
    cache.mkdir(parents=True, exist_ok=True)
    # Workers of one host start together: the lock makes one generate while the others wait for it.
    # One lock per seed: the variants of a seed share their weight files.
    with open(cache / f".random-{seed}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(target):
            _generate(seed, voice_seconds, cache, target)
    return Checkpoint(str(target), "random", "generated")


def _complete(target: Path) -> bool:
    marker = target / MARKER
    if not marker.is_file() or not all((target / n).is_file() for n in FILES):
        return False
    try:
        return json.loads(marker.read_text()).get("generator") == GENERATOR_VERSION
    except ValueError:
        return False


def _generate(seed: int, voice_seconds: float, cache: Path, target: Path) -> None:
    # Build in a sibling temp dir and rename: an interrupted generation leaves only a temp dir that
    # is never loaded (and is swept here, under the lock, next time).
    for stale in cache.glob(f".random-{seed}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        shutil.rmtree(target)  # incomplete, damaged by hand, or made by an older generator
    # Another voice length of the same seed has the same weights: link its files instead of rebuilding.
    siblings = [cache / f"random-{seed}", *sorted(cache.glob(f"random-{seed}-voice*"))]
    sibling = next((d for d in siblings if d != target and _complete(d)), None)
    tmp = Path(tempfile.mkdtemp(prefix=f".random-{seed}-", dir=cache))
    try:
        from engine.checkpoint.generate import write_random_checkpoint

        write_random_checkpoint(tmp, seed, voice_seconds, weights_from=sibling)
        marker = {"weights": "random", "seed": seed, "voice_seconds": voice_seconds, "generator": GENERATOR_VERSION}
        (tmp / MARKER).write_text(json.dumps(marker))
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class VoiceShape(msgspec.Struct, frozen=True, kw_only=True):
    """How big a checkpoint's built-in voice is: what T3 prefills and S3Gen re-runs on every flow call.
    A real 10 s voice: 150 T3 prompt tokens, 250 S3Gen prompt tokens, 500 mel frames."""

    t3_prompt_tokens: int
    s3gen_prompt_tokens: int
    s3gen_prompt_frames: int


def voice_shape(path: str | os.PathLike[str]) -> VoiceShape:
    """The prompt lengths of the built-in voice (conds.pt) in a checkpoint directory; every benchmark
    records them, since a shorter voice flatters streaming."""
    import torch

    conds = torch.load(Path(path) / "conds.pt", map_location="cpu", weights_only=True)
    return VoiceShape(
        t3_prompt_tokens=int(conds["t3"]["cond_prompt_speech_tokens"].shape[-1]),
        s3gen_prompt_tokens=int(conds["gen"]["prompt_token"].shape[-1]),
        s3gen_prompt_frames=int(conds["gen"]["prompt_feat"].shape[-2]),
    )
