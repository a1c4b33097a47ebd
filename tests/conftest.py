"""Session fixtures: one generated checkpoint per test run, one float32 engine on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The hub is unreachable on CI; make the client say so at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Child processes (the end-to-end stacks' workers, the benches' smoke runs, the CLI) run S3Gen's CFM
# decoder at 2 Euler steps instead of upstream's 10, for a quarter of the flow's cost: what they check
# (ordering, overlap, cancels, faults, accounting, batched = alone) does not depend on the step count.
# The in-process `engine` below keeps 10 for the comparisons with upstream and the seamlessness figures.
os.environ.setdefault("CHATTERBOX_FLOW_STEPS", "2")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chatterbox-cache")


# The tests' checkpoint has a 1 s built-in voice: S3Gen re-runs the voice prompt on every flow call, and a
# 10 s one (the default, a real voice's size, which every benchmark uses) makes each call ~5x dearer on a
# CPU. What the tests check does not depend on the prompt's length; test_checkpoint checks the 10 s one.
TEST_CHECKPOINT = "random:0:1s"


@pytest.fixture(scope="session")
def checkpoint_dir(cache_dir: Path) -> Path:
    from engine.checkpoint import resolve

    ckpt = resolve(TEST_CHECKPOINT, cache_dir)
    assert ckpt.weights == "random"
    return Path(ckpt.path)


@pytest.fixture(scope="session")
def engine(checkpoint_dir: Path):
    from engine.models.synthesizer import Engine
    from engine.settings import EngineSettings

    # float32 keeps streamed-vs-offline comparisons about the algorithm, not bf16 rounding.
    settings = EngineSettings(checkpoint=str(checkpoint_dir), dtype="float32", watermark=False)
    return Engine(settings)
