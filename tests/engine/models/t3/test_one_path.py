import torch

from engine.models.t3.stream import SPEECH_VOCAB, T3Streamer
from engine.params import SynthesisParams

TEXT = "Hello there, this is a test of streaming."


def test_tokens_match_upstream_inference_for_the_same_seed(engine):
    """Sampling as upstream: same seed, same ids as T3.inference (which uses the global generator)."""
    t3 = engine.model.t3
    streamer = T3Streamer(t3, engine.model.tokenizer)
    ids = streamer.text_ids(TEXT)
    cond = engine.conditionals(None, 0.5).t3
    params = SynthesisParams(seed=3)
    mine = list(streamer.tokens(ids, cond, params, 24, torch.Generator().manual_seed(3)))
    torch.manual_seed(3)
    upstream = t3.inference(
        t3_cond=cond,
        text_tokens=torch.cat([ids, ids]),
        max_new_tokens=24,
        temperature=0.8,
        cfg_weight=0.5,
        repetition_penalty=1.2,
        min_p=0.05,
        top_p=1.0,
    )[0].tolist()
    assert mine == upstream[: len(mine)]
    assert len(mine) == 24 or upstream[len(mine)] == t3.hp.stop_speech_token


def test_stream_chunks_follow_the_schedule_and_drop_non_speech_ids(engine):
    streamer = engine.t3
    cond = engine.conditionals(None, 0.5).t3
    params = SynthesisParams(seed=11, chunk_size=20)
    chunks = list(
        streamer.stream(
            [TEXT],
            cond,
            params,
            first_chunk_size=5,
            max_new_tokens=60,
            generator=torch.Generator().manual_seed(11),
        )
    )
    sizes = [len(c.tokens) for c in chunks]
    expected = [5, 10, 20, 20, 20, 20, 20]
    assert sizes[:-1] == expected[: len(sizes) - 1]
    assert 0 <= sizes[-1] <= expected[len(sizes) - 1]
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert sum(c.generated for c in chunks) == 60  # random weights: the bound ends it
    flat = [t for c in chunks for t in c.tokens]
    assert all(t < SPEECH_VOCAB for t in flat)
    assert [c.start for c in chunks] == [sum(sizes[:i]) for i in range(len(chunks))]
    # The same seed without chunking samples the same ids, with the non-speech ones left in.
    ids = streamer.text_ids(TEXT)
    raw = list(streamer.tokens(ids, cond, params, 60, torch.Generator().manual_seed(11)))
    assert [t for t in raw if t < SPEECH_VOCAB] == flat
    assert len(raw) > len(flat)  # random weights sample ids >= 6561 too


def test_pieces_stream_as_one_with_continuous_numbering(engine):
    cond = engine.conditionals(None, 0.5).t3
    params = SynthesisParams(seed=2, chunk_size=10)
    chunks = list(
        engine.t3.stream(
            ["First piece.", "Second piece.", "Third."],
            cond,
            params,
            first_chunk_size=10,
            max_new_tokens=15,
            generator=torch.Generator().manual_seed(2),
        )
    )
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert sum(c.generated for c in chunks) == 45
    assert sum(c.final for c in chunks) == 1 and chunks[-1].final


def test_should_stop_ends_generation_within_a_step(engine):
    cond = engine.conditionals(None, 0.5).t3
    seen = []

    def stop() -> bool:
        return len(seen) >= 7

    ids = engine.t3.text_ids(TEXT)
    for token in engine.t3.tokens(ids, cond, SynthesisParams(), 100, torch.Generator().manual_seed(0), stop):
        seen.append(token)
    assert len(seen) == 7


def test_cfg_weight_zero_runs_a_batch_of_one(engine):
    cond = engine.conditionals(None, 0.5).t3
    ids = engine.t3.text_ids(TEXT)
    out = list(engine.t3.tokens(ids, cond, SynthesisParams(cfg_weight=0.0), 5, torch.Generator().manual_seed(0)))
    assert len(out) == 5
