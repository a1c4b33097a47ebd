"""A checkpoint's models, whole (upstream's loader) or one pipeline stage's share of them.

The in-process engine takes upstream's `ChatterboxTTS.from_local` as it is. A pipeline worker needs
only its stage's share: the T3 worker T3, the voice encoder, the text tokenizer, the built-in voice and,
to clone voices, S3Gen's speech tokenizer, speaker encoder and mel front end; the S3Gen worker S3Gen's
flow and vocoder. `load_stage` builds the same upstream modules as `from_local`, but skips the random
initialisation that loading the weights overwrites, reads only the stage's tensors (memory-mapped, from
the same safetensors files) and never builds the other stage's modules' weights or upstream's
watermarker: a respawned worker is back in seconds instead of tens of seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from chatterbox.models.s3gen import S3Gen
from chatterbox.models.t3 import T3
from chatterbox.models.tokenizers import EnTokenizer
from chatterbox.models.voice_encoder import VoiceEncoder
from chatterbox.tts import ChatterboxTTS, Conditionals
from safetensors import safe_open
from transformers.initialization import no_init_weights

from engine.errors import CheckpointError

log = logging.getLogger(__name__)

Role = Literal["all", "t3", "s3gen"]
# S3Gen's parts only the S3Gen worker runs; the T3 worker keeps the rest of S3Gen for cloning voices.
S3GEN_STAGE_PARTS = ("flow", "mel2wav")


@dataclass
class StageModels:
    """The attributes of `ChatterboxTTS` the engine uses; a stage's missing parts are None."""

    t3: T3 | None
    s3gen: S3Gen
    ve: VoiceEncoder | None
    tokenizer: EnTokenizer | None
    device: str
    conds: Conditionals | None


def _tensors(path: Path, keep=lambda key: True) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {key: f.get_tensor(key) for key in f.keys() if keep(key)}


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, allowed_missing=()) -> None:
    """Load `state` into a module built without initialisation: every parameter must come from the file
    (an uninitialised one would be garbage), so anything missing beyond `allowed_missing` is an error."""
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(tuple(allowed_missing))]
    parameters = dict(module.named_parameters())
    unfilled = [k for k in missing if k in parameters]
    if unfilled or result.unexpected_keys:
        raise CheckpointError(
            f"{what}: {len(unfilled)} weights missing ({', '.join(unfilled[:3])}...) and "
            f"{len(result.unexpected_keys)} unexpected ({', '.join(result.unexpected_keys[:3])}...)"
        )


def load_stage(path: str, device: str, role: Role) -> ChatterboxTTS | StageModels:
    """The models a process with this role needs, from a checkpoint directory (see module docstring)."""
    if role == "all":
        return ChatterboxTTS.from_local(path, device)
    ckpt = Path(path)
    started = time.monotonic()
    with no_init_weights():
        s3gen = S3Gen()
        t3 = T3() if role == "t3" else None
        ve = VoiceEncoder() if role == "t3" else None
    if role == "t3":
        # Never filled: dropped before their weights would be read (their memory was never touched).
        for part in S3GEN_STAGE_PARTS:
            setattr(s3gen, part, None)
        state = _tensors(ckpt / "s3gen.safetensors", lambda k: not k.startswith(S3GEN_STAGE_PARTS))
        # Upstream loads s3gen.safetensors with strict=False: the speech tokenizer's mel filters and
        # window are computed at construction and are not in the file.
        _load(s3gen, state, "s3gen.safetensors", allowed_missing=("tokenizer._", *S3GEN_STAGE_PARTS))
        _load(t3, _tensors(ckpt / "t3_cfg.safetensors"), "t3_cfg.safetensors")
        _load(ve, _tensors(ckpt / "ve.safetensors"), "ve.safetensors")
        t3.to(device).eval()
        ve.to(device).eval()
        tokenizer = EnTokenizer(str(ckpt / "tokenizer.json"))
        conds = None
        if (builtin := ckpt / "conds.pt").exists():
            map_location = torch.device("cpu") if device in ("cpu", "mps") else None
            conds = Conditionals.load(builtin, map_location=map_location).to(device)
    else:
        _load(s3gen, _tensors(ckpt / "s3gen.safetensors"), "s3gen.safetensors", allowed_missing=("tokenizer._",))
        tokenizer, conds = None, None
    s3gen.to(device).eval()
    log.info("%s stage loaded from %s in %.1f s", role, path, time.monotonic() - started)
    return StageModels(t3=t3, s3gen=s3gen, ve=ve, tokenizer=tokenizer, device=device, conds=conds)
