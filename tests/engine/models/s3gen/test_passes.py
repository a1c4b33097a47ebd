"""The S3Gen worker's policy: which job's chunks go next, how many at once, and who shares a flow call."""

from __future__ import annotations

import numpy as np
import pytest

from broker.protocol import Span, Tokens
from engine.metrics import Metrics
from engine.models.s3gen.passes import JobState, next_pass, take
from engine.models.s3gen.stream import S3GenStream

COALESCE = 30


@pytest.fixture
def make_job(engine):
    def make(accepted_at: float, sizes: list[int], *, first_audio_at: float | None = None, audio: float = 0.0,
             streaming: bool = True) -> JobState:  # fmt: skip
        stream = S3GenStream(engine.model.s3gen, engine.model.conds.gen, 0, left=8, holdback=2, hift_context=8)
        state = JobState(
            stream=stream, client="c", attempt=1, accepted_at=accepted_at, generation=0,
            metrics=Metrics(weights="random", audio_seconds=audio), streaming=streaming,
            first_audio_at=first_audio_at,
        )  # fmt: skip
        for i, n in enumerate(sizes):
            header = Tokens(
                job="j", client="c", attempt=1, seq=i + 1, final=False, generated=n, seed=0, accepted_at=accepted_at,
                span=Span(0.0, 0.0),
            )  # fmt: skip
            state.queue.append((header, np.arange(n, dtype=np.int32)))
        return state

    return make


def sizes(chunks) -> list[int]:
    return [len(t) for _, t in chunks]


def test_a_first_chunk_goes_alone_later_ones_coalesce_up_to_the_budget(make_job) -> None:
    fresh = make_job(0.0, [12, 24, 48])
    assert sizes(fresh.next_chunks(COALESCE)) == [12]  # first audio: small and soon
    playing = make_job(0.0, [10, 12, 8, 5], first_audio_at=1.0)
    assert sizes(playing.next_chunks(COALESCE)) == [10, 12, 8]  # 30 tokens; 5 more would pass the budget
    big = make_job(0.0, [50, 10], first_audio_at=1.0)
    assert sizes(big.next_chunks(COALESCE)) == [50]  # a chunk over the budget still goes, whole
    assert sizes(playing.next_chunks(0)) == [10]  # budget 0: one chunk per pass


def test_no_audio_yet_comes_first_then_whoever_runs_out_soonest(make_job) -> None:
    jobs = {
        "ahead": make_job(0.0, [10], first_audio_at=1.0, audio=9.0),  # its listener runs out at 10 s
        "behind": make_job(0.5, [10], first_audio_at=2.0, audio=1.0),  # runs out at 3 s
        "new": make_job(5.0, [12]),  # no audio yet
        "idle": make_job(0.0, []),  # nothing queued
    }
    order = []
    while group := next_pass(jobs, COALESCE, flow_batch=1):
        (job, state, chunks), *_ = group
        order.append(job)
        del state.queue[: len(chunks)]
    assert order == ["new", "behind", "ahead"]


def test_jobs_whose_windows_have_the_same_shape_share_a_flow_call(make_job) -> None:
    jobs = {f"s{i}": make_job(float(i), [12]) for i in range(5)}  # five first chunks of 12 tokens
    jobs["odd"] = make_job(0.5, [20])  # more urgent than s1..s4, but another shape
    group = next_pass(jobs, COALESCE, flow_batch=4)
    assert [job for job, _, _ in group] == ["s0", "s1", "s2", "s3"]  # most urgent first, up to 4
    assert next_pass(jobs, COALESCE, flow_batch=1) == group[:1]
    # A window that gives no final frames yet (all look-ahead and hold-back) runs alone.
    jobs = {"tiny": make_job(0.0, [4]), "other": make_job(1.0, [4])}
    assert [job for job, _, _ in next_pass(jobs, COALESCE, flow_batch=4)] == ["tiny"]


def test_a_job_being_vocoded_is_not_picked_again_until_its_pass_is_back(make_job) -> None:
    jobs = {"urgent": make_job(0.0, [12, 20]), "later": make_job(1.0, [12])}
    group = next_pass(jobs, COALESCE, flow_batch=1)
    take(group)
    assert [job for job, _, _ in group] == ["urgent"] and sizes(jobs["urgent"].queue) == [20]
    # Its next chunk waits (two passes of one job at once would emit its audio out of order).
    assert [job for job, _, _ in next_pass(jobs, COALESCE, flow_batch=4)] == ["later"]
    jobs["urgent"].busy = False
    assert [job for job, _, _ in next_pass(jobs, COALESCE, flow_batch=4)] == ["urgent"]
