"""Whole jobs through the batched T3 scheduler: pieces, chunking, admission, cancel and failure, checked
against the same jobs run alone, as the in-process engine runs them (float32, generated checkpoint)."""

from __future__ import annotations

import msgspec
import pytest
import torch

from engine.models.t3.chunks import TokenChunk
from engine.models.t3.scheduler import T3Request, T3Scheduler
from engine.params import SynthesisParams

MAX_TOKENS = 14
JOBS = {
    # Two pieces: the job leaves the batch after its first sentence and joins again for the second.
    "two-pieces": (["First sentence here.", "And a second one."], SynthesisParams(seed=5, chunk_size=10)),
    "no-cfg": (["Only one piece, without guidance."], SynthesisParams(seed=6, cfg_weight=0.0, chunk_size=12)),
    "fixed": (["Sampled past its stop token."], SynthesisParams(seed=7, ignore_stop=True, chunk_size=10)),
}
FIRST = 4
JOBS = {
    key: (pieces, msgspec.structs.replace(params, first_chunk_size=FIRST, max_new_tokens=MAX_TOKENS))
    for key, (pieces, params) in JOBS.items()
}


def chunk_fields(chunks: list[TokenChunk]) -> list[tuple]:
    return [(c.seq, c.start, c.tokens, c.final, c.generated) for c in chunks]


def request(engine, key: str) -> T3Request:
    pieces, params = JOBS[key]
    return engine.t3_request(
        key, pieces, engine.conditionals(None, params.exaggeration), params, params.seed, whole=False
    )


@pytest.fixture(scope="module")
def alone(engine) -> dict[str, list[tuple]]:
    runs = {}
    for key, (pieces, params) in JOBS.items():
        conds = engine.conditionals(None, params.exaggeration)
        runs[key] = chunk_fields(list(engine.token_chunks(pieces, conds, params, params.seed, whole=False)))
    return runs


def run(scheduler: T3Scheduler, out: dict[str, list[TokenChunk]], steps: int | None = None) -> None:
    n = 0
    while len(scheduler) and (steps is None or n < steps):
        result = scheduler.step()
        assert not result.failed
        for key, chunk in result.chunks:
            out.setdefault(key, []).append(chunk)
        n += 1


def test_jobs_joining_and_leaving_mid_batch_chunk_as_they_do_alone(engine, alone) -> None:
    scheduler = T3Scheduler(engine.model.t3, prefill_chunk=8)  # prompts join over several steps
    out: dict[str, list[TokenChunk]] = {}
    scheduler.submit(request(engine, "two-pieces"))
    run(scheduler, out, steps=3)
    scheduler.submit(request(engine, "no-cfg"))
    scheduler.submit(request(engine, "fixed"))
    run(scheduler, out)
    for key in JOBS:
        assert chunk_fields(out[key]) == alone[key], key
        assert out[key][-1].final and sum(c.final for c in out[key]) == 1
    # Token accounting: the fixed-length job sampled exactly its bound, and every chunk's start is the
    # count of valid tokens before it.
    assert sum(c.generated for c in out["fixed"]) == MAX_TOKENS
    for chunks in out.values():
        assert [c.start for c in chunks] == [sum(len(d.tokens) for d in chunks[:i]) for i in range(len(chunks))]
    assert scheduler.batch.mask is None and not scheduler.requests and not scheduler.waiting


def test_a_new_prompt_is_prefilled_in_parts_while_the_others_keep_sampling(engine) -> None:
    scheduler = T3Scheduler(engine.model.t3, prefill_chunk=8)
    scheduler.submit(request(engine, "fixed"))
    scheduler.step()  # nobody is decoding yet: the whole prompt at once, then its first token
    (running,) = scheduler.batch.streams
    assert running.steps == 1
    scheduler.submit(request(engine, "no-cfg"))
    joining = scheduler.requests["no-cfg"]
    prompt = None
    for step in range(2, MAX_TOKENS):
        scheduler.step()
        assert running.steps == step  # one token for the running stream every step
        if joining.stream is None:
            break
        prompt = joining.stream.prompt.shape[1]
        assert joining.stream.prefilled == 8 * (step - 1)  # 8 more prompt positions per step
    assert prompt is not None and prompt > 8
    assert [s.key for s in scheduler.batch.streams] == ["fixed", "no-cfg"]
    assert step - 1 == -(-prompt // 8)  # joined after ceil(prompt / 8) steps
    # A job cancelled halfway through its prefill leaves nothing behind.
    scheduler.submit(request(engine, "two-pieces"))
    scheduler.step()
    assert scheduler.requests["two-pieces"].stream.prefilled == 8
    assert scheduler.cancel("two-pieces")
    assert not scheduler.waiting and [s.key for s in scheduler.batch.streams] == ["fixed", "no-cfg"]


def test_a_cancelled_job_leaves_without_disturbing_the_others(engine, alone) -> None:
    scheduler = T3Scheduler(engine.model.t3)
    out: dict[str, list[TokenChunk]] = {}
    for key in JOBS:
        scheduler.submit(request(engine, key))
    run(scheduler, out, steps=5)
    assert scheduler.cancel("no-cfg")
    assert not scheduler.cancel("no-cfg")  # already gone
    cut = len(out.get("no-cfg", []))
    run(scheduler, out)
    assert len(out.get("no-cfg", [])) == cut  # nothing after the cancel
    assert chunk_fields(out.get("no-cfg", [])) == alone["no-cfg"][:cut]
    for key in ("two-pieces", "fixed"):
        assert chunk_fields(out[key]) == alone[key], key


def test_a_failing_prefill_fails_only_its_own_job(engine, alone) -> None:
    scheduler = T3Scheduler(engine.model.t3)
    out: dict[str, list[TokenChunk]] = {}
    scheduler.submit(request(engine, "fixed"))
    broken = request(engine, "no-cfg")
    broken.pieces = [torch.tensor([[10**6]])]  # an id far outside the text vocabulary
    scheduler.submit(broken)
    failed = []
    while len(scheduler):
        result = scheduler.step()
        failed += result.failed
        for key, chunk in result.chunks:
            out.setdefault(key, []).append(chunk)
    assert [key for key, _ in failed] == ["no-cfg"]
    assert "prefill" in failed[0][1]
    assert chunk_fields(out["fixed"]) == alone["fixed"]
    assert "no-cfg" not in out
