"""Generate a checkpoint in the real file layout with the real architectures and seeded random weights.

Used where the hub is unreachable: the same loader runs on it and compute costs are real, but the
model has learned nothing, so its audio is noise.
"""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path

import numpy as np
import torch
from chatterbox.tts import ChatterboxTTS
from safetensors.torch import save_file
from tqdm import tqdm

from engine.audio import SAMPLE_RATE
from engine.models.voices import conditionals_from_wav

SPECIALS = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[PAD]": 3, "[SEP]": 4, "[CLS]": 5, "[MASK]": 6}
START_ID = 255  # T3Config.start_text_token; [STOP] is T3Config.stop_text_token = 0
VOCAB_SIZE = 704  # T3Config.english_only().text_tokens_dict_size


def tokenizer_json() -> str:
    """A character-level tokenizer covering English text, with the special ids T3 expects."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    chars = list(string.ascii_letters + string.digits + string.punctuation) + list("’‘“”—–…éèêàâçñöüäß")
    vocab: dict[str, int] = dict(SPECIALS)
    vocab["[START]"] = START_ID
    next_id = len(SPECIALS)
    for ch in chars:
        while next_id in vocab.values():
            next_id += 1
        vocab[ch] = next_id
        next_id += 1
    # Common English letter pairs as merges, so the vocabulary is used as a BPE one is.
    letters = "etaoinshrdlcumwfgypbvk"
    merges: list[tuple[str, str]] = []
    for a in letters:
        for b in letters:
            if len(vocab) >= VOCAB_SIZE:
                break
            while next_id in vocab.values():
                next_id += 1
            if next_id >= VOCAB_SIZE:
                break
            vocab[a + b] = next_id
            merges.append((a, b))
            next_id += 1
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tok.add_special_tokens([*SPECIALS, "[START]"])
    return tok.to_str()


def synthetic_voice(seconds: float, seed: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced, vowel-like reference: harmonics on a gliding f0 under a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * t
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = (700.0, 1200.0, 2600.0)
    wav = np.zeros_like(t)
    for k in range(1, 30):
        fk = k * f0
        gain = sum(np.exp(-(((fk - f) / 150.0) ** 2)) for f in formants) + 0.05
        wav += gain / k * np.sin(k * phase)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t) ** 2
    wav = wav * envelope + 0.01 * rng.standard_normal(len(t))
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


WEIGHT_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json")


def write_random_checkpoint(out: Path, seed: int, voice_seconds: float, weights_from: Path | None = None) -> None:
    """The five files into `out`. With `weights_from` (a complete checkpoint of the same seed), its
    weight files are linked, not rebuilt: the same seed gives the same bytes, only the voice differs."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder

    desc = f"generating random checkpoint (seed {seed}, {voice_seconds:g} s voice)"
    if weights_from is not None:
        for name in WEIGHT_FILES:
            _link_or_copy(weights_from / name, out / name)
        model = ChatterboxTTS.from_local(str(out), "cpu")
        _write_voice(model, out, voice_seconds, seed)
        return
    steps = ["voice encoder", "T3", "S3Gen", "tokenizer", "built-in voice"]
    with tqdm(total=len(steps), desc=desc, unit="step") as bar:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            bar.set_postfix_str(steps[0])
            ve = VoiceEncoder().eval()
            save_file(_contiguous(ve.state_dict()), out / "ve.safetensors")
            bar.update()

            bar.set_postfix_str(steps[1])
            t3 = T3().eval()
            save_file(_contiguous(t3.state_dict()), out / "t3_cfg.safetensors")
            bar.update()

            bar.set_postfix_str(steps[2])
            s3gen = S3Gen().eval()
            state = {k: v for k, v in s3gen.state_dict().items() if not k.startswith("tokenizer._")}
            save_file(_contiguous(state), out / "s3gen.safetensors")
            bar.update()

            bar.set_postfix_str(steps[3])
            (out / "tokenizer.json").write_text(tokenizer_json())
            bar.update()

            bar.set_postfix_str(steps[4])
            model = ChatterboxTTS(t3, s3gen, ve, EnTokenizer(str(out / "tokenizer.json")), "cpu")
            _write_voice(model, out, voice_seconds, seed)
            bar.update()


def _write_voice(model: ChatterboxTTS, out: Path, voice_seconds: float, seed: int) -> None:
    # Through the same code as a user's uploaded voice, so its shapes are a real voice's of that length.
    wav = synthetic_voice(voice_seconds, seed)
    conditionals_from_wav(model, wav).save(out / "conds.pt")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; clone keeps each tensor its own.
    return {k: v.detach().contiguous().clone() for k, v in state.items()}
