"""Voice conditionals: the checkpoint's built-in voice, or ones computed from reference audio bytes."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import librosa
import numpy as np
import torch
from chatterbox.models.s3gen import S3GEN_SR
from chatterbox.models.s3gen.s3gen import get_resampler
from chatterbox.models.s3tokenizer import S3_SR
from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.tts import ChatterboxTTS, Conditionals

# Upstream's limits: S3Gen sees at most 10 s of the reference, T3's prompt tokens come from 6 s.
S3GEN_REF_SECONDS = 10
T3_REF_SECONDS = 6


@torch.inference_mode()
def conditionals_from_wav(model: ChatterboxTTS, wav24: np.ndarray, exaggeration: float = 0.5) -> Conditionals:
    """T3 and S3Gen conditionals from a 24 kHz reference, as upstream's `prepare_conditionals` does."""
    device = model.device
    ref16 = librosa.resample(wav24, orig_sr=S3GEN_SR, target_sr=S3_SR)
    gen = s3gen_reference(model.s3gen, wav24[: S3GEN_REF_SECONDS * S3GEN_SR], device)
    prompt_len = model.t3.hp.speech_cond_prompt_len
    tokens, _ = model.s3gen.tokenizer.forward([ref16[: T3_REF_SECONDS * S3_SR]], max_len=prompt_len)
    tokens = torch.atleast_2d(tokens).to(device)
    ve = torch.from_numpy(model.ve.embeds_from_wavs([ref16], sample_rate=S3_SR))
    ve = ve.mean(axis=0, keepdim=True).to(device)
    t3 = T3Cond(
        speaker_emb=ve,
        cond_prompt_speech_tokens=tokens,
        emotion_adv=exaggeration * torch.ones(1, 1, 1),
    ).to(device=device)
    return Conditionals(t3, gen)


def s3gen_reference(s3gen: torch.nn.Module, wav24: np.ndarray, device: str) -> dict:
    """What upstream's `S3Token2Wav.embed_ref` returns, always computed in float32.

    Upstream casts the audio to the flow's dtype first, which fails for bfloat16 on the CPU (no bf16
    FFT) and needs the flow, which a T3-only worker does not load. The flow casts these itself.
    """
    wav = torch.from_numpy(np.ascontiguousarray(wav24, dtype=np.float32))[None].to(device)
    mels = s3gen.mel_extractor(wav).transpose(1, 2).float()
    wav16 = get_resampler(S3GEN_SR, S3_SR, device)(wav)
    embedding = s3gen.speaker_encoder.inference(wav16)
    tokens, token_lens = s3gen.tokenizer(wav16)
    # Two mel frames per token; a reference not padded to whole 40 ms tokens yields one token too many.
    if mels.shape[1] != 2 * tokens.shape[1]:
        tokens = tokens[:, : mels.shape[1] // 2]
        token_lens[0] = tokens.shape[1]
    return {
        "prompt_token": tokens.to(device),
        "prompt_token_len": token_lens,
        "prompt_feat": mels,
        "prompt_feat_len": None,
        "embedding": embedding,
    }


def with_exaggeration(conds: Conditionals, exaggeration: float) -> Conditionals:
    """The same voice at another exaggeration; cheap, shares every tensor but the scalar."""
    base = conds.t3
    t3 = T3Cond(
        speaker_emb=base.speaker_emb,
        cond_prompt_speech_tokens=base.cond_prompt_speech_tokens,
        emotion_adv=torch.full((1, 1, 1), float(exaggeration), device=base.speaker_emb.device),
    )
    return Conditionals(t3, conds.gen)


class VoiceCache:
    """Conditionals by SHA-256 of the reference bytes, bounded LRU (computing them costs ~1 s)."""

    def __init__(self, capacity: int = 32) -> None:
        self._items: OrderedDict[str, Conditionals] = OrderedDict()
        self._capacity = capacity

    @staticmethod
    def key(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def get(self, key: str) -> Conditionals | None:
        conds = self._items.get(key)
        if conds is not None:
            self._items.move_to_end(key)
        return conds

    def put(self, key: str, conds: Conditionals) -> None:
        self._items[key] = conds
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
