import io
import subprocess
import sys
import threading

import msgspec
import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio import decode_reference
from engine.checkpoint.generate import synthetic_voice
from engine.errors import InvalidInput
from engine.models.s3gen.stream import SAMPLES_PER_TOKEN
from engine.params import SynthesisParams
from engine.text import split_pieces

TEXT = "Streaming speech, one chunk at a time."


def _encode(wav: np.ndarray, fmt: str, sr: int = 24000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt)
    return buf.getvalue()


def test_stream_and_regular_give_the_same_tokens_and_nearly_the_same_audio(engine):
    params = SynthesisParams(seed=21, first_chunk_size=6, chunk_size=10, max_new_tokens=24)
    chunks = list(engine.stream(TEXT, params))
    wav, regular = engine.synthesize(TEXT, params)
    streamed = np.concatenate([c.pcm for c in chunks])
    last = chunks[-1].metrics
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert [c.final for c in chunks].count(True) == 1 and chunks[-1].final
    assert last.valid_tokens == regular.valid_tokens and last.tokens_generated == regular.tokens_generated == 24
    assert len(chunks) >= 2
    assert len(streamed) == len(wav) == SAMPLES_PER_TOKEN * last.valid_tokens
    assert 10 * np.log10(np.sum(wav**2) / np.sum((wav - streamed) ** 2)) > 20
    assert last.weights == regular.weights == "random"
    assert last.first_chunk_latency is not None and 0 < last.first_chunk_latency <= last.total_latency
    assert last.audio_seconds == pytest.approx(len(streamed) / 24000)
    assert last.rtf == pytest.approx(last.total_latency / last.audio_seconds)


def test_long_text_streams_as_one_stream(engine):
    text = " ".join(f"Sentence number {i} is here." for i in range(12))
    params = SynthesisParams(seed=4, max_new_tokens=6, chunk_size=10)
    small = msgspec.structs.replace(engine.settings, piece_chars=60)
    engine.settings, saved = small, engine.settings
    try:
        chunks = list(engine.stream(text, params))
    finally:
        engine.settings = saved
    pieces = len(split_pieces(text, 60))
    assert pieces >= 5
    assert chunks[-1].metrics.tokens_generated == 6 * pieces  # each piece ran T3 to its bound
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    total = sum(len(c.pcm) for c in chunks)
    assert total == SAMPLES_PER_TOKEN * chunks[-1].metrics.valid_tokens


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_voice_cloning_from_reference_audio(engine, fmt):
    data = _encode(synthetic_voice(2.0, seed=5), fmt)
    before = len(engine.voices)
    conds = engine.conditionals(data, 0.7)
    assert conds.gen["prompt_token"].shape[1] > 0
    assert float(conds.t3.emotion_adv.flatten()[0]) == pytest.approx(0.7)
    assert len(engine.voices) == before + 1
    assert engine.conditionals(data, 0.3).gen is conds.gen  # cached by content hash
    chunks = list(engine.stream(TEXT, SynthesisParams(seed=1, max_new_tokens=8), reference=data))
    assert sum(len(c.pcm) for c in chunks) == SAMPLES_PER_TOKEN * chunks[-1].metrics.valid_tokens


def test_cloned_voice_differs_from_the_built_in_one(engine):
    data = _encode(synthetic_voice(3.0, seed=9) * 0.5, "WAV")
    cloned = engine.conditionals(data, 0.5)
    builtin = engine.conditionals(None, 0.5)
    assert not np.allclose(cloned.t3.speaker_emb.float().numpy(), builtin.t3.speaker_emb.float().numpy())


def test_a_bf16_t3_only_engine_clones_voices_like_upstream(engine, checkpoint_dir):
    """The T3 worker computes S3Gen's reference tensors too: without S3Gen's flow, in bfloat16 (the
    pipeline's CPU default, where upstream's embed_ref fails), and equal to upstream's float32 result."""
    from engine.models.synthesizer import Engine
    from engine.settings import EngineSettings

    t3_only = Engine(EngineSettings(checkpoint=str(checkpoint_dir), dtype="bfloat16", watermark=False), role="t3")
    assert t3_only.model.s3gen.flow is None and t3_only.model.s3gen.mel2wav is None
    data = _encode(synthetic_voice(2.0, seed=6), "WAV")
    mine = t3_only.conditionals(data, 0.5).gen
    wav = decode_reference(data, t3_only.settings.voice)  # as the engine reads it
    upstream = engine.model.s3gen.embed_ref(torch.from_numpy(wav).float(), 24000, device="cpu")  # float32 flow
    assert set(mine) == set(upstream)
    for key, value in upstream.items():
        if isinstance(value, torch.Tensor):
            assert mine[key].dtype == value.dtype, key
            assert np.allclose(mine[key].numpy(), value.detach().numpy(), atol=1e-4), key


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"text": ""}, "text", "empty"),
        ({"text": "x" * 3001}, "text", "maximum"),
        ({"params": SynthesisParams(chunk_size=5)}, "chunk_size", "between"),
        ({"params": SynthesisParams(temperature=9.0)}, "temperature", "between"),
        ({"reference": b"definitely not audio"}, "audio_prompt", "decoded"),
        ({"reference": b""}, "audio_prompt", "empty"),
        ({"reference": "short"}, "audio_prompt", "at least"),
        ({"reference": "long"}, "audio_prompt", "maximum"),
        ({"reference": "silent"}, "audio_prompt", "silent"),
    ],
)
def test_bad_input_raises_the_specific_error(engine, kwargs, field, reason):
    refs = {
        "short": _encode(synthetic_voice(0.3, seed=1), "WAV"),
        "long": _encode(np.tile(synthetic_voice(1.0, seed=1), 61), "WAV"),
        "silent": _encode(np.zeros(48000, np.float32), "WAV"),
    }
    args = {"text": TEXT, "params": SynthesisParams(max_new_tokens=5), "reference": None, **kwargs}
    if isinstance(args["reference"], str):
        args["reference"] = refs[args["reference"]]
    for call in (engine.stream, engine.synthesize):
        with pytest.raises(InvalidInput) as exc:
            call(args["text"], args["params"], args["reference"])
        assert exc.value.field == field and reason in exc.value.reason


def test_should_stop_ends_a_stream_without_a_final_chunk(engine):
    cancelled = threading.Event()
    chunks = []
    params = SynthesisParams(seed=3, max_new_tokens=400, chunk_size=10)
    for chunk in engine.stream(TEXT, params, should_stop=cancelled.is_set):
        chunks.append(chunk)
        cancelled.set()  # a client cancel arriving after the first chunk
    assert len(chunks) == 1 and not chunks[0].final
    assert chunks[0].metrics.tokens_generated < 400


def test_watermark_marks_each_chunk_without_changing_its_length():
    from engine.models.watermark import Watermarker

    audio = synthetic_voice(1.0, seed=2)
    marked = Watermarker(enabled=True).apply(audio, 24000)
    assert marked.shape == audio.shape and marked.dtype == np.float32
    assert not np.allclose(marked, audio)
    assert Watermarker(enabled=False).apply(audio, 24000) is audio


def test_cli_streams_writes_a_wav_and_ends_with_json(checkpoint_dir, tmp_path):
    out = tmp_path / "say.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.say", "Hello from the command line.", "-o", str(out), "--stream",
         "--chunk-size", "10", "--first-chunk-size", "6", "--max-new-tokens", "24", "--seed", "1", "--json",
         "--checkpoint", str(checkpoint_dir), "--dtype", "float32"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = msgspec.json.decode(proc.stdout.strip().splitlines()[-1])
    for key in ("first_chunk_latency", "rtf", "chunks", "audio_seconds", "weights"):
        assert key in summary
    assert summary["weights"] == "random" and summary["chunks"] >= 2
    wav, sr = sf.read(out)
    assert sr == 24000 and len(wav) / sr == pytest.approx(summary["audio_seconds"], abs=1e-3)
    assert "chunk   1:" in proc.stderr and "random weights" in proc.stderr


def test_cli_reports_bad_input_with_the_field(checkpoint_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "engine.say", "hi", "-o", str(tmp_path / "x.wav"), "--chunk-size", "500",
         "--checkpoint", str(checkpoint_dir)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "chunk_size" in proc.stderr
