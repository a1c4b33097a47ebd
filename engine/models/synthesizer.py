"""The in-process engine: one model, streaming and regular synthesis, voices, metrics."""

from __future__ import annotations

import gc
import logging
import secrets
import time
from collections.abc import Callable, Iterator

import msgspec
import numpy as np
import torch
from chatterbox.tts import Conditionals

from engine.audio import SAMPLE_RATE, decode_reference
from engine.checkpoint import resolve
from engine.errors import CheckpointError
from engine.metrics import Metrics
from engine.models.loading import Role, load_stage
from engine.models.s3gen.stream import S3GenStream
from engine.models.t3.chunks import TokenChunk
from engine.models.t3.prompt import text_ids
from engine.models.t3.scheduler import T3Request, run_alone
from engine.models.voices import VoiceCache, conditionals_from_wav, with_exaggeration
from engine.models.watermark import Watermarker
from engine.params import SynthesisParams
from engine.settings import EngineSettings
from engine.text import check_text, split_pieces

log = logging.getLogger(__name__)


class AudioChunk(msgspec.Struct, kw_only=True):
    seq: int
    pcm: np.ndarray  # float32 mono at 24 kHz
    tokens: int
    final: bool
    metrics: Metrics


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: bfloat16 matmuls run natively. Decoding is memory-bound, so half the bytes
    per weight pays: on a 2-core AMD EPYC (AVX512-BF16) a T3 step took 135 ms vs 294 ms in float32."""
    cpu = torch._C._cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def pick_dtype(setting: str, device: str) -> torch.dtype:
    if setting == "auto":
        return torch.bfloat16 if device.startswith("cuda") or cpu_has_fast_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[setting]
    except KeyError:
        raise ValueError(f"CHATTERBOX_DTYPE must be auto, float32, bfloat16 or float16, not {setting!r}") from None


class Engine:
    """The models of one checkpoint. A pipeline worker loads only its role's share of them
    (engine.models.loading), so a slot's two processes hold one copy of the weights between them."""

    def __init__(self, settings: EngineSettings | None = None, role: Role = "all") -> None:
        self.settings = settings or EngineSettings.from_env()
        self.role = role
        if self.settings.threads > 0:
            torch.set_num_threads(self.settings.threads)
        self.checkpoint = resolve(self.settings.checkpoint, self.settings.cache_dir or None)
        self.weights = self.checkpoint.weights
        if self.weights == "random":
            log.warning("RANDOM WEIGHTS loaded from %s: the audio is noise", self.checkpoint.path)
        device = self.settings.device
        self.model = load_stage(self.checkpoint.path, device, role)
        self.dtype = pick_dtype(self.settings.dtype, device)
        if role != "s3gen":
            self.model.t3.to(self.dtype)
            if self.model.conds is None:
                raise CheckpointError(f"{self.checkpoint.path} has no built-in voice (conds.pt)")
        if role != "t3":
            self.model.s3gen.flow.to(self.dtype)
        gc.collect()
        self.voices = VoiceCache()
        self.watermarker = Watermarker(enabled=self.settings.watermark and role != "t3")

    @property
    def device(self) -> str:
        return self.settings.device

    # -- inputs -------------------------------------------------------------------------------------

    def conditionals(self, reference: bytes | None, exaggeration: float) -> Conditionals:
        """The built-in voice, or the voice of reference audio bytes (cached by content hash)."""
        base = self.model.conds
        if reference is not None:
            key = VoiceCache.key(reference)
            base = self.voices.get(key)
            if base is None:
                wav = decode_reference(reference, self.settings.voice)
                base = conditionals_from_wav(self.model, wav)
                self.voices.put(key, base)
        conds = with_exaggeration(base, exaggeration)
        conds.t3.to(dtype=self.dtype)
        return conds

    def prepare(self, text: object, params: SynthesisParams) -> tuple[list[str], SynthesisParams, int]:
        clean = check_text(text, self.settings.max_text_chars)
        params = params.validated()
        seed = params.seed if params.seed is not None else secrets.randbits(62)
        return split_pieces(clean, self.settings.piece_chars), params, seed

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def text_ids(self, piece: str) -> torch.Tensor:
        return text_ids(self.model.t3, self.model.tokenizer, piece)

    def t3_request(
        self, key: str, pieces: list[str], conds: Conditionals, params: SynthesisParams, seed: int, *, whole: bool
    ) -> T3Request:
        """A job for the T3 scheduler, a worker's batch or `run_alone`. `whole`: one token chunk per
        text piece (regular synthesis), else the streaming schedule from `first_chunk_size`."""
        return T3Request(
            key,
            [self.text_ids(piece) for piece in pieces],
            conds.t3,
            params,
            first_chunk_size=params.first_chunk_size or self.settings.first_chunk_size,
            max_new_tokens=params.max_new_tokens or self.settings.max_new_tokens,
            generator=self._generator(seed),
            whole=whole,
        )

    def token_chunks(
        self, pieces, conds, params, seed, *, whole: bool, should_stop: Callable[[], bool] = lambda: False
    ) -> Iterator[TokenChunk]:
        """One job's token chunks in-process: the same scheduler a worker batches jobs in, with one job."""
        request = self.t3_request("in-process", pieces, conds, params, seed, whole=whole)
        return run_alone(self.model.t3, request, should_stop)

    def open_s3gen(self, ref: dict, seed: int, holdback: int | None = None) -> S3GenStream:
        s = self.settings
        return S3GenStream(
            self.model.s3gen,
            ref,
            seed,
            left=s.flow_left_tokens,
            holdback=s.flow_holdback_tokens if holdback is None else holdback,
            hift_context=s.hift_context_frames,
            flow_steps=s.flow_steps,
        )

    # -- synthesis ----------------------------------------------------------------------------------

    def stream(
        self,
        text: str,
        params: SynthesisParams | None = None,
        reference: bytes | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[AudioChunk]:
        """Audio chunks as they are produced. Raises InvalidInput before the first chunk on bad input."""
        started = time.monotonic()
        pieces, params, seed = self.prepare(text, params or SynthesisParams())
        conds = self.conditionals(reference, params.exaggeration)
        return self._stream(started, pieces, conds, params, seed, should_stop)

    def _stream(self, started, pieces, conds, params, seed, should_stop) -> Iterator[AudioChunk]:
        metrics = Metrics(weights=self.weights)
        s3 = self.open_s3gen(conds.gen, seed)
        for chunk in self.token_chunks(pieces, conds, params, seed, whole=False, should_stop=should_stop):
            pcm = self.watermarker.apply(s3.push(chunk.tokens, chunk.final), SAMPLE_RATE)
            metrics.tokens_generated += chunk.generated
            metrics.valid_tokens += len(chunk.tokens)
            if not len(pcm) and not chunk.final:
                continue  # everything held back for context; nothing to send yet
            metrics.add_audio(len(pcm), SAMPLE_RATE, time.monotonic() - started)
            yield AudioChunk(
                seq=metrics.chunks,
                pcm=pcm,
                tokens=len(chunk.tokens),
                final=chunk.final,
                metrics=msgspec.structs.replace(metrics),
            )

    def synthesize(
        self, text: str, params: SynthesisParams | None = None, reference: bytes | None = None
    ) -> tuple[np.ndarray, Metrics]:
        """Regular synthesis: all tokens first, then S3Gen once over them (per text piece for long text)."""
        started = time.monotonic()
        pieces, params, seed = self.prepare(text, params or SynthesisParams())
        conds = self.conditionals(reference, params.exaggeration)
        metrics = Metrics(weights=self.weights)
        s3 = self.open_s3gen(conds.gen, seed, holdback=0)
        parts = []
        for chunk in self.token_chunks(pieces, conds, params, seed, whole=True):
            metrics.tokens_generated += chunk.generated
            metrics.valid_tokens += len(chunk.tokens)
            parts.append(s3.push(chunk.tokens, chunk.final))
        wav = self.watermarker.apply(np.concatenate(parts), SAMPLE_RATE)
        metrics.add_audio(len(wav), SAMPLE_RATE, time.monotonic() - started)  # one chunk: the whole utterance
        return wav, metrics
