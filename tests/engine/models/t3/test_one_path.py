"""The one T3 decoding path (prompt, sampler, batch, scheduler, chunker) against upstream's own
`T3.inference`, and the chunking the in-process engine gets from it (float32, generated checkpoint)."""

import torch

from engine.models.t3.batch import BatchStream, T3Batch
from engine.models.t3.chunks import SPEECH_VOCAB
from engine.params import SynthesisParams

TEXT = "Hello there, this is a test of streaming."


def raw_alone(engine, text: str, params: SynthesisParams, tokens: int) -> list[int]:
    """Every id one stream samples, the non-speech ones and the stop token included, in a batch of one."""
    stop = engine.model.t3.hp.stop_speech_token
    batch = T3Batch(engine.model.t3)
    stream = BatchStream("solo", params, tokens, torch.Generator().manual_seed(params.seed))
    batch.add(stream, engine.text_ids(text), engine.conditionals(None, params.exaggeration).t3)
    out: list[int] = []
    while len(batch):
        token = batch.step()["solo"]
        if token == stop and not params.ignore_stop:
            break
        out.append(token)
    return out


def test_tokens_match_upstream_inference_for_the_same_seed(engine):
    """Same seed, same ids as upstream's T3.inference (which draws from the global generator): raw from
    the batch, and as the valid-token chunks the scheduler cuts for the in-process engine."""
    t3 = engine.model.t3
    params = SynthesisParams(seed=3, first_chunk_size=5, chunk_size=10, max_new_tokens=16)
    cond = engine.conditionals(None, 0.5).t3
    ids = engine.text_ids(TEXT)
    torch.manual_seed(3)
    upstream = t3.inference(
        t3_cond=cond,
        text_tokens=torch.cat([ids, ids]),
        max_new_tokens=16,
        temperature=0.8,
        cfg_weight=0.5,
        repetition_penalty=1.2,
        min_p=0.05,
        top_p=1.0,
    )[0].tolist()
    if t3.hp.stop_speech_token in upstream:
        upstream = upstream[: upstream.index(t3.hp.stop_speech_token)]
    assert raw_alone(engine, TEXT, params, 16) == upstream
    chunks = list(engine.token_chunks([TEXT], engine.conditionals(None, 0.5), params, 3, whole=False))
    assert [t for c in chunks for t in c.tokens] == [t for t in upstream if t < SPEECH_VOCAB]
    assert sum(c.generated for c in chunks) == len(upstream)


def test_stream_chunks_follow_the_schedule_and_drop_non_speech_ids(engine):
    params = SynthesisParams(seed=11, first_chunk_size=4, chunk_size=10, max_new_tokens=32)
    chunks = list(engine.token_chunks([TEXT], engine.conditionals(None, 0.5), params, 11, whole=False))
    sizes = [len(c.tokens) for c in chunks]
    assert len(sizes) >= 3  # the ramp is exercised: first, twice the first, then chunk_size
    expected = [4, 8, 10, 10, 10]
    assert sizes[:-1] == expected[: len(sizes) - 1]
    assert 0 <= sizes[-1] <= expected[len(sizes) - 1]
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert sum(c.generated for c in chunks) == 32  # random weights: the bound ends it
    flat = [t for c in chunks for t in c.tokens]
    assert [c.start for c in chunks] == [sum(sizes[:i]) for i in range(len(chunks))]
    # The same seed unchunked samples the same ids, with the non-speech ones left in.
    raw = raw_alone(engine, TEXT, params, 32)
    assert [t for t in raw if t < SPEECH_VOCAB] == flat
    assert len(raw) > len(flat)  # random weights sample ids >= 6561 too


def test_regular_synthesis_gets_one_chunk_per_piece_of_the_same_tokens(engine):
    pieces = ["First piece.", "Second piece.", "Third."]
    params = SynthesisParams(seed=2, chunk_size=10, max_new_tokens=8)
    conds = engine.conditionals(None, 0.5)
    streamed = list(engine.token_chunks(pieces, conds, params, 2, whole=False))
    whole = list(engine.token_chunks(pieces, conds, params, 2, whole=True))
    assert [c.seq for c in streamed] == list(range(1, len(streamed) + 1))
    assert sum(c.generated for c in streamed) == 24 == sum(c.generated for c in whole)
    assert sum(c.final for c in streamed) == 1 and streamed[-1].final
    assert [c.generated for c in whole] == [8, 8, 8] and [c.final for c in whole] == [False, False, True]
    assert [t for c in whole for t in c.tokens] == [t for c in streamed for t in c.tokens]


def test_should_stop_ends_decoding_within_a_step(engine):
    params = SynthesisParams(seed=0, first_chunk_size=4, chunk_size=4, max_new_tokens=16, ignore_stop=True)
    conds = engine.conditionals(None, 0.5)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 9

    stopped = list(engine.token_chunks([TEXT], conds, params, 0, whole=False, should_stop=stop))
    assert len(calls) == 10  # asked before each of the 9 steps, and once more: no step after a True
    assert sum(c.generated for c in stopped) <= 9 and not any(c.final for c in stopped)
    full = list(engine.token_chunks([TEXT], conds, params, 0, whole=False))
    assert [c.tokens for c in stopped] == [c.tokens for c in full[: len(stopped)]]


def test_cfg_weight_zero_decodes_one_row(engine):
    params = SynthesisParams(seed=0, cfg_weight=0.0, max_new_tokens=5, ignore_stop=True)
    assert BatchStream("x", params, 5, torch.Generator()).rows == 1
    chunks = list(engine.token_chunks([TEXT], engine.conditionals(None, 0.5), params, 0, whole=True))
    assert sum(c.generated for c in chunks) == 5
