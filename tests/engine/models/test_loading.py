"""A worker's stage loader gives the very tensors upstream's `from_local` loads, for its stage only, and
refuses a checkpoint that would leave one of them unloaded (generated checkpoint)."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import CheckpointError
from engine.models.loading import load_stage


def same_tensors(mine: torch.nn.Module, upstream: torch.nn.Module, skip: tuple[str, ...] = ()) -> int:
    theirs = upstream.state_dict()
    ours = mine.state_dict()
    # Upstream's T3 keeps its inference wrapper (`patched_model`, made on first use) as a submodule: the
    # same tensors again under a second name.
    expected = {k for k in theirs if not k.startswith((*skip, "patched_model."))}
    assert set(ours) == expected
    for key in expected:
        assert torch.equal(ours[key], theirs[key].to(ours[key].dtype)), key
    return len(expected)


@pytest.fixture(scope="module")
def upstream(engine):
    """The session's float32 in-process engine holds what upstream's `from_local` loaded."""
    assert engine.role == "all" and engine.dtype == torch.float32
    return engine.model


def test_the_t3_stage_loads_what_from_local_loads_and_no_flow_or_vocoder(checkpoint_dir, upstream) -> None:
    t3 = load_stage(str(checkpoint_dir), "cpu", "t3")
    assert t3.s3gen.flow is None and t3.s3gen.mel2wav is None
    assert same_tensors(t3.t3, upstream.t3) > 100
    assert same_tensors(t3.ve, upstream.ve) > 0
    # S3Gen's speech tokenizer, speaker encoder and mel front end stay, for cloning voices.
    assert same_tensors(t3.s3gen, upstream.s3gen, skip=("flow.", "mel2wav.")) > 10
    assert torch.equal(t3.conds.t3.speaker_emb, upstream.conds.t3.speaker_emb)
    assert t3.tokenizer.encode("hello") == upstream.tokenizer.encode("hello")


def test_the_s3gen_stage_loads_only_s3gen(checkpoint_dir, upstream) -> None:
    s3 = load_stage(str(checkpoint_dir), "cpu", "s3gen")
    assert s3.t3 is None and s3.ve is None and s3.tokenizer is None
    assert same_tensors(s3.s3gen, upstream.s3gen) > 100
    # Computed at construction, not read from the file: still what upstream computes.
    assert torch.equal(s3.s3gen.trim_fade, upstream.s3gen.trim_fade)


def test_a_weight_missing_from_the_file_is_an_error_not_garbage(checkpoint_dir, tmp_path) -> None:
    for name in os.listdir(checkpoint_dir):
        (tmp_path / name).symlink_to(checkpoint_dir / name)
    state = load_file(checkpoint_dir / "ve.safetensors")
    dropped = sorted(state)[0]
    del state[dropped]
    (tmp_path / "ve.safetensors").unlink()
    save_file(state, tmp_path / "ve.safetensors")
    with pytest.raises(CheckpointError, match=r"ve\.safetensors: 1 weights missing") as exc:
        load_stage(str(tmp_path), "cpu", "t3")
    assert dropped in str(exc.value)
