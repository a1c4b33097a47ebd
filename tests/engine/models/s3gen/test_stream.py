import numpy as np
import pytest
import torch

from engine.eval.quality import snr_by_edge_distance, snr_db
from engine.eval.seed_baseline import SeedStyleStream
from engine.models.s3gen.flow import flow_mels
from engine.models.s3gen.hift import HiftStream
from engine.models.s3gen.stream import SAMPLES_PER_TOKEN, S3GenStream, offline, run_flow

# What these tests check (token accounting, batched vs alone) does not depend on the CFM decoder's step
# count, so they run 2 steps; the comparisons with upstream and the seamlessness test run upstream's 10.
FAST = 2


def _tokens(n: int, seed: int = 1) -> list[int]:
    return torch.randint(0, 6561, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _run(stream, tokens: list[int], sizes: list[int]) -> list[np.ndarray]:
    out, i = [], 0
    for k, n in enumerate(sizes):
        out.append(stream.push(tokens[i : i + n], final=k == len(sizes) - 1))
        i += n
    assert i == len(tokens)
    return out


@pytest.fixture(scope="module")
def ref(engine):
    return engine.model.conds.gen


def test_flow_matches_upstream_for_the_same_noise(engine, ref):
    flow = engine.model.s3gen.flow
    tokens = torch.tensor([_tokens(20)])
    n_prompt = ref["prompt_feat"].shape[1]
    torch.manual_seed(5)
    z = torch.randn(1, 80, n_prompt + 40)
    torch.manual_seed(5)  # upstream draws the prompt's noise itself: the same draw
    upstream, _ = flow.inference(
        token=tokens, token_len=torch.tensor([20]), finalize=True, noised_mels=z[:, :, n_prompt:],
        n_timesteps=10, **ref,
    )  # fmt: skip
    mine = flow_mels(flow, ref, tokens, z[0, :, :n_prompt], z[0, :, n_prompt:])
    assert mine.shape == (1, 80, 40)
    assert torch.allclose(mine, upstream.float(), atol=1e-5)


@pytest.mark.parametrize("sizes", [[5, 10, 20, 15], [1, 1, 30, 2, 16], [50], [3, 47]])
def test_vocoder_stage_matches_an_offline_call(engine, sizes):
    hift = engine.model.s3gen.mel2wav
    mel = torch.randn(1, 80, sum(sizes), generator=torch.Generator().manual_seed(0)) * 2 - 5
    whole = HiftStream(hift, seed=7).push(mel, final=True)
    stream, parts, i = HiftStream(hift, seed=7, context=8), [], 0
    for k, n in enumerate(sizes):
        parts.append(stream.push(mel[:, :, i : i + n], final=k == len(sizes) - 1))
        i += n
    streamed = np.concatenate(parts)
    assert len(streamed) == len(whole) == 480 * sum(sizes)
    err = float(np.abs(streamed - whole).max())
    print(f"HiFT streamed vs offline, chunks {sizes}: max abs error {err:.2e}")
    assert err < 1e-3


@pytest.mark.parametrize("sizes", [[12, 24, 48, 16], [4, 4, 4, 88], [100], [1, 2, 3, 4, 5, 85], [30, 0, 70], [60, 40]])
def test_token_accounting_is_exact(engine, ref, sizes):
    tokens = _tokens(sum(sizes), seed=len(sizes))
    stream = S3GenStream(engine.model.s3gen, ref, 3, left=8, holdback=2, hift_context=8, flow_steps=FAST)
    parts = _run(stream, tokens, sizes)
    total = sum(len(p) for p in parts)
    assert total == SAMPLES_PER_TOKEN * len(tokens)  # not even one frame lost
    assert np.isfinite(np.concatenate(parts)).all()


def test_streamed_audio_is_10db_closer_to_offline_than_the_seed_method(engine, ref):
    tokens = _tokens(100, seed=4)
    sizes = [12, 24, 48, 16]
    reference = offline(engine.model.s3gen, ref, tokens, seed=9)
    ours = _run(S3GenStream(engine.model.s3gen, ref, 9, left=8, holdback=2, hift_context=8), tokens, sizes)
    seed = _run(SeedStyleStream(engine.model.s3gen, ref, 9), tokens, sizes)
    ours_wav, seed_wav = np.concatenate(ours), np.concatenate(seed)
    assert len(ours_wav) == len(seed_wav) == len(reference)
    ours_snr, seed_snr = snr_db(reference, ours_wav), snr_db(reference, seed_wav)
    ours_edges = snr_by_edge_distance(reference, ours_wav, [len(p) for p in ours])
    seed_edges = snr_by_edge_distance(reference, seed_wav, [len(p) for p in seed])
    print(f"\nstreamed vs offline SNR: ours {ours_snr:.1f} dB, seed-style {seed_snr:.1f} dB")
    for bucket in ours_edges:
        print(f"  {bucket:>9} from a chunk edge: ours {ours_edges[bucket]:6.1f} dB, seed {seed_edges[bucket]:6.1f} dB")
    assert ours_snr >= seed_snr + 10


def test_a_stream_refuses_input_after_its_final_chunk(engine, ref):
    stream = S3GenStream(engine.model.s3gen, ref, 0, left=8, holdback=2, hift_context=8, flow_steps=FAST)
    stream.push(_tokens(10), final=True)
    with pytest.raises(RuntimeError):
        stream.push([1, 2, 3], final=True)


def test_streams_batched_through_one_flow_call_sound_as_they_do_alone(engine, ref):
    """Three streams (two voices' worth of seeds and tokens) planned together, one flow call per chunk."""
    s3gen = engine.model.s3gen
    sizes = [6, 12, 24, 10]
    token_sets = [_tokens(sum(sizes), seed) for seed in (1, 2, 3)]

    def stream(seed: int) -> S3GenStream:
        return S3GenStream(s3gen, ref, seed, left=8, holdback=2, hift_context=8, flow_steps=FAST)

    alone = [np.concatenate(_run(stream(10 + i), tokens, sizes)) for i, tokens in enumerate(token_sets)]
    streams = [stream(10 + i) for i in range(3)]
    batched: list[list[np.ndarray]] = [[], [], []]
    start = 0
    for k, n in enumerate(sizes):
        final = k == len(sizes) - 1
        shapes = {s.shape(n, final) for s in streams}
        assert len(shapes) == 1  # same chunk sizes, same prompt: one shape
        works = [s.plan(t[start : start + n], final) for s, t in zip(streams, token_sets, strict=True)]
        frames = run_flow(works) if works[0].window else [None] * 3
        for i, (s, w, f) in enumerate(zip(streams, works, frames, strict=True)):
            batched[i].append(s.finish(w, f))
        start += n
    for i in range(3):
        together = np.concatenate(batched[i])
        assert len(together) == len(alone[i]) == SAMPLES_PER_TOKEN * sum(sizes)
        err = float(np.abs(together - alone[i]).max())
        print(f"stream {i}: batched vs alone, max abs difference {err:.2e}")
        assert err < 1e-4
    with pytest.raises(ValueError):
        run_flow([stream(1).plan(_tokens(10), False), stream(2).plan(_tokens(20), False)])
    # Another step count is another shape: such streams never share a flow call.
    other = S3GenStream(s3gen, ref, 3, left=8, holdback=2, hift_context=8, flow_steps=FAST + 1)
    assert other.shape(10, False) != stream(1).shape(10, False)
