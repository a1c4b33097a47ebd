"""Batched T3 decoding: streams joining and leaving at step boundaries sample exactly what they would
alone (per-stream generators, own CFG rows and sampling parameters), float32 on the generated checkpoint."""

from __future__ import annotations

import pytest
import torch

from engine.models.t3.batch import BatchStream, T3Batch
from engine.params import SynthesisParams
from tests.engine.models.t3.test_one_path import raw_alone

TEXTS = ["Hello there, this is one.", "A second and somewhat longer sentence to say.", "Third."]
PARAMS = [
    SynthesisParams(seed=1),
    SynthesisParams(seed=2, cfg_weight=0.0, temperature=0.7),  # one row instead of two
    SynthesisParams(seed=3, top_p=0.9, exaggeration=0.9),
]
TOKENS = 12


@pytest.fixture(scope="module")
def alone(engine) -> list[list[int]]:
    """Each stream decoded in a batch of its own (the in-process engine's case): the reference."""
    return [raw_alone(engine, text, params, TOKENS) for text, params in zip(TEXTS, PARAMS, strict=True)]


def join(batch: T3Batch, engine, i: int) -> None:
    params = PARAMS[i]
    stream = BatchStream(str(i), params, TOKENS, torch.Generator().manual_seed(params.seed))
    batch.add(stream, engine.text_ids(TEXTS[i]), engine.conditionals(None, params.exaggeration).t3)


def collect(out: dict[str, list[int]], sampled: dict[str, int], stop: int) -> None:
    for key, token in sampled.items():
        if token != stop:
            out.setdefault(key, []).append(token)


def test_streams_joining_mid_batch_sample_what_they_sample_alone(engine, alone) -> None:
    stop = engine.model.t3.hp.stop_speech_token
    batch = T3Batch(engine.model.t3)
    out: dict[str, list[int]] = {}
    join(batch, engine, 0)
    for _ in range(3):  # stream 0 runs ahead; 1 and 2 join three steps later, at other prompt lengths
        collect(out, batch.step(), stop)
    join(batch, engine, 1)
    collect(out, batch.step(), stop)
    join(batch, engine, 2)
    while len(batch):
        collect(out, batch.step(), stop)
    for i in range(3):
        assert out[str(i)] == alone[i], i
    assert batch.mask is None and not batch.layers  # everyone left: nothing held


def test_a_removed_stream_does_not_disturb_the_others(engine, alone) -> None:
    stop = engine.model.t3.hp.stop_speech_token
    batch = T3Batch(engine.model.t3)
    out: dict[str, list[int]] = {}
    for i in range(3):
        join(batch, engine, i)
    for _ in range(4):
        collect(out, batch.step(), stop)
    batch.remove("1")  # cancelled after 4 tokens
    assert [s.key for s in batch.streams] == ["0", "2"]
    while len(batch):
        collect(out, batch.step(), stop)
    assert out["0"] == alone[0] and out["2"] == alone[2]
    assert out["1"] == alone[1][:4]
