import hashlib
import logging
import shutil
from pathlib import Path

import pytest

from engine import checkpoint as ckpt_mod
from engine.checkpoint import FILES, MARKER, resolve
from engine.errors import CheckpointError
from tests.conftest import TEST_CHECKPOINT


def _digests(path: Path) -> dict[str, str]:
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in FILES}


def test_generated_checkpoint_has_the_real_layout_and_loads_through_from_local(checkpoint_dir):
    from chatterbox.tts import ChatterboxTTS

    assert all((checkpoint_dir / name).stat().st_size > 0 for name in FILES)
    model = ChatterboxTTS.from_local(checkpoint_dir, "cpu")
    assert model.conds is not None  # conds.pt gives the built-in voice
    ids = model.tokenizer.encode("It's 5 o'clock, Mr. Smith; isn't it?")
    assert 1 not in ids  # [UNK]: English text is covered


def test_random_seed_reproduces_the_same_files(checkpoint_dir, tmp_path):
    again = resolve(TEST_CHECKPOINT, tmp_path)
    assert _digests(Path(again.path)) == _digests(checkpoint_dir)


def test_resolving_again_reuses_the_generated_checkpoint(checkpoint_dir, cache_dir, monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("regenerated")

    monkeypatch.setattr("engine.checkpoint.generate.write_random_checkpoint", boom)
    assert resolve(TEST_CHECKPOINT, cache_dir).path == str(checkpoint_dir)


@pytest.fixture(scope="module")
def voice10_dir(checkpoint_dir, cache_dir) -> Path:
    """The default generated checkpoint, `random:0`: made from the tests' 1 s one by linking its weights."""
    return Path(resolve("random:0", cache_dir).path)


def test_the_default_voice_has_a_real_10_s_voices_shapes(voice10_dir, checkpoint_dir):
    """A real voice (Chatterbox's conds.pt, a user's 10 s upload) gives T3 150 prompt tokens (6 s) and
    S3Gen a 10 s prompt: 250 tokens, 500 mel frames. The generated default voice must match."""
    import json

    from chatterbox.tts import Conditionals

    conds = Conditionals.load(voice10_dir / "conds.pt")
    assert tuple(conds.t3.cond_prompt_speech_tokens.shape) == (1, 150)
    assert tuple(conds.t3.speaker_emb.shape) == (1, 256)
    assert tuple(conds.gen["prompt_token"].shape) == (1, 250)
    assert tuple(conds.gen["prompt_feat"].shape) == (1, 500, 80)
    assert tuple(conds.gen["embedding"].shape) == (1, 192)
    marker = json.loads((voice10_dir / MARKER).read_text())
    assert marker["voice_seconds"] == 10.0 and marker["generator"] == ckpt_mod.GENERATOR_VERSION
    # The 1 s variant's voice is smaller; both share the same weight files (linked, not copied).
    short = Conditionals.load(checkpoint_dir / "conds.pt")
    assert tuple(short.gen["prompt_token"].shape) == (1, 25)
    assert tuple(short.gen["prompt_feat"].shape) == (1, 50, 80)
    for name in ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json"):
        assert (voice10_dir / name).stat().st_ino == (checkpoint_dir / name).stat().st_ino, name


def test_a_cache_from_an_older_generator_is_regenerated(tmp_path, monkeypatch):
    old = tmp_path / "random-4"
    old.mkdir()
    for name in FILES:
        (old / name).write_text("old")
    (old / MARKER).write_text('{"weights": "random", "seed": 4}')  # generator 1 wrote no version
    made = []

    def fake(out: Path, seed: int, voice_seconds: float, weights_from=None) -> None:
        made.append((seed, voice_seconds, weights_from))
        for name in FILES:
            (out / name).write_text("new")

    monkeypatch.setattr("engine.checkpoint.generate.write_random_checkpoint", fake)
    got = resolve("random:4", tmp_path)
    assert made == [(4, 10.0, None)]  # the stale copy is neither used nor linked from
    assert (Path(got.path) / "conds.pt").read_text() == "new"
    assert resolve("random:4", tmp_path).path == got.path and len(made) == 1


def test_interrupted_generation_is_never_used(tmp_path, monkeypatch):
    def interrupted(out: Path, seed: int, voice_seconds: float, weights_from=None) -> None:
        (out / "ve.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("engine.checkpoint.generate.write_random_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        resolve("random:7", tmp_path)
    assert not (tmp_path / "random-7").exists()
    # Nothing of the generation is left, only the (empty) lock file that serialises generators.
    assert [p.name for p in tmp_path.iterdir()] == [".random-7.lock"]


def test_directory_missing_a_file_names_it(checkpoint_dir, tmp_path):
    for name in FILES:
        if name != "s3gen.safetensors":
            (tmp_path / name).symlink_to(checkpoint_dir / name)
    with pytest.raises(CheckpointError, match=r"missing s3gen\.safetensors"):
        resolve(str(tmp_path))


def test_directory_reports_its_weights(checkpoint_dir, tmp_path):
    assert resolve(str(checkpoint_dir)).weights == "random"
    for name in FILES:
        (tmp_path / name).symlink_to(checkpoint_dir / name)
    assert not (tmp_path / MARKER).exists()
    assert resolve(str(tmp_path)).weights == "real"


def test_missing_directory_and_bad_seed_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="integer seed"):
        resolve("random:abc", tmp_path)
    for bad in ("random:0:ten", "random:0:10", "random:0:0.5s", "random:0:61s"):
        with pytest.raises(CheckpointError, match="seconds, 1s to 60s"):
            resolve(bad, tmp_path)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def test_hub_mode_offline_fails_and_says_what_to_do(offline_hub):
    with pytest.raises(CheckpointError) as exc:
        resolve("hub")
    message = str(exc.value)
    assert "ResembleAI/chatterbox" in message
    assert "CHATTERBOX_CHECKPOINT=random" in message and "directory" in message


def test_hub_mode_unreachable_fails_fast(offline_hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(CheckpointError, match=r"unreachable.*CHATTERBOX_CHECKPOINT=random"):
        resolve("hub")


def test_auto_mode_offline_falls_back_to_random_loudly(offline_hub, voice10_dir, cache_dir, caplog):
    with caplog.at_level(logging.WARNING):
        got = resolve("auto", cache_dir)
    assert got.weights == "random" and got.path == str(voice10_dir)
    assert "RANDOM" in caplog.text and "noise" in caplog.text


def test_hub_mode_uses_a_complete_local_cache(offline_hub, checkpoint_dir, tmp_path, monkeypatch):
    calls = []

    def cached(repo, name, local_files_only=False):
        calls.append((repo, name, local_files_only))
        return str(checkpoint_dir / name)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", cached)
    got = resolve("hub")
    assert got.weights == "real" and got.source == "cache"
    assert all(local for *_, local in calls) and len(calls) == len(FILES)


def test_stale_temp_dirs_are_swept(tmp_path, monkeypatch):
    stale = tmp_path / ".random-3-abc"
    stale.mkdir()

    def fake(out: Path, seed: int, voice_seconds: float, weights_from=None) -> None:
        for name in FILES:
            (out / name).write_text("x")

    monkeypatch.setattr("engine.checkpoint.generate.write_random_checkpoint", fake)
    got = ckpt_mod.resolve("random:3", tmp_path)
    assert not stale.exists() and Path(got.path).name == "random-3"
    shutil.rmtree(got.path)
