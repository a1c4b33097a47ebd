"""Many streams on one slot: a broker and one T3 + S3Gen slot of capacity 4 on the generated checkpoint.

Seeded jobs are compared with the same jobs run alone on the same slot. The slot runs in float32 and
vocodes one token chunk per pass (no coalescing; two passes at once on two lanes once T3 is idle), so
a job's audio is a function of its tokens alone and "the same tokens" can be checked as "the same
samples" (within 1e-4: jobs that share a flow call differ from their solo runs by float rounding,
~1e-7; other tokens would differ everywhere).
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.stack import Stack, wait_for
from broker.client import Client
from tests.e2e.test_pipeline import LOAD_TIMEOUT, in_thread, run_stream, samples

CAPACITY = 4
JOB = dict(first_chunk_size=4, chunk_size=10, ignore_stop=True)
TEXTS = [
    "The first of four voices in one batch.",
    "A second voice joins while the first is talking.",
    "Third.",
    "And a fourth, somewhat longer, sentence joins the others last of all.",
]
LENGTHS = [24, 16, 28, 20]  # raw tokens: they leave the batch at different steps
STAGGER = 1.5  # seconds between the jobs' starts: each joins a batch already decoding


@pytest.fixture(scope="module")
def stack(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    # Upstream's 10 flow steps (not the tests' 2): S3Gen must still lag T3 here, for the two-lane check.
    env = {"CHATTERBOX_WORKER_COALESCE_TOKENS": "0", "CHATTERBOX_DTYPE": "float32", "CHATTERBOX_FLOW_STEPS": "10"}
    s = Stack(tmp_path_factory.mktemp("batch-stack"), str(checkpoint_dir), slots=("a",), capacity=CAPACITY, env=env)
    yield s
    s.stop()
    print(s.logs())


@pytest.fixture(scope="module")
def client(stack: Stack):
    with Client(stack.settings, chunk_timeout=120) as c:
        wait_for(lambda: [s.live for s in c.stats().slots] == [True], LOAD_TIMEOUT, "slot live", 0.5)
        yield c


def job(i: int) -> dict:
    return dict(seed=100 + i, max_new_tokens=LENGTHS[i], **JOB)


@pytest.fixture(scope="module")
def alone(client: Client) -> list[dict]:
    runs = [run_stream(client, TEXTS[i], **job(i)) for i in range(len(TEXTS))]
    assert all(r["error"] is None for r in runs), [r["error"] for r in runs]
    return runs


def audio(result: dict) -> np.ndarray:
    return np.concatenate([c.pcm for c in result["chunks"]])


def same_audio(batched: dict, alone: dict, what: str) -> None:
    np.testing.assert_allclose(audio(batched), audio(alone), rtol=0, atol=1e-4, err_msg=what)


def shared_flow_calls(results: list[dict]) -> int:
    """Chunks of different jobs vocoded in one pass (the pass's start time is their s3gen span's)."""
    starts = [{c.s3gen_span.start for c in r["chunks"]} for r in results]
    return sum(len(a & b) for i, a in enumerate(starts) for b in starts[i + 1 :])


def concurrent_passes(results: list[dict], after: float) -> int:
    """Pairs of chunks of different jobs whose passes (begun after `after`) ran at the same time in
    different flow calls."""
    spans = [{c.s3gen_span for c in r["chunks"] if c.s3gen_span.start > after} for r in results]
    return sum(
        a.start != b.start and a.start < b.end and b.start < a.end
        for i, mine in enumerate(spans)
        for theirs in spans[i + 1 :]
        for a in mine
        for b in theirs
    )


def test_the_slot_reports_its_capacity(client: Client) -> None:
    assert [s.capacity for s in client.stats().slots] == [CAPACITY]


def test_streams_joining_and_leaving_mid_batch_sound_as_they_do_alone(client: Client, alone) -> None:
    threads = []
    for i in range(len(TEXTS)):
        threads.append(in_thread(client, TEXTS[i], **job(i)))
        time.sleep(STAGGER)
    for thread, _ in threads:
        thread.join(300)
    batched = [r for _, r in threads]
    assert all(r["error"] is None for r in batched), [r["error"] for r in batched]
    for i, (b, a) in enumerate(zip(batched, alone, strict=True)):
        last = b["chunks"][-1].metrics
        assert last.tokens_generated == LENGTHS[i]
        assert abs(samples(b["chunks"]) - 960 * last.valid_tokens) <= 480
        assert [c.seq for c in b["chunks"]] == list(range(1, len(b["chunks"]) + 1)) and b["chunks"][-1].final
        same_audio(b, a, f"job {i}")
    # They really ran together: each job's T3 work began before the previous job's had ended.
    for earlier, later in itertools.pairwise(batched):
        assert later["chunks"][0].t3_span.start < earlier["chunks"][-1].t3_span.end
    print("chunks vocoded in a flow call shared with another job:", shared_flow_calls(batched))
    # Once T3 had no job left, S3Gen vocoded two jobs at once on two lanes (separate passes).
    t3_idle = max(r["chunks"][-1].t3_span.end for r in batched)
    assert concurrent_passes(batched, after=t3_idle) > 0


def test_a_cancel_removes_one_stream_without_disturbing_the_others(client: Client, stack: Stack, alone) -> None:
    threads = [in_thread(client, TEXTS[i], **job(i)) for i in (0, 1)]
    victim: dict = {"chunks": [], "error": None}
    stream = client.stream("This one is cancelled mid-batch.", max_new_tokens=400, seed=7, **JOB)

    def consume_then_cancel() -> None:
        for chunk in stream:
            victim["chunks"].append(chunk)
            if len(victim["chunks"]) == 2:
                stream.close()
                return

    canceller = threading.Thread(target=consume_then_cancel, daemon=True)
    canceller.start()
    canceller.join(300)
    assert len(victim["chunks"]) == 2
    log = stack.workers["a", "t3"]
    job_id = victim["chunks"][0].job
    wait_for(lambda: f"job {job_id} stopped" in log.text(), 30, "T3 to drop the cancelled job")
    for thread, _ in threads:
        thread.join(300)
    for i, (_, r) in enumerate(threads):
        assert r["error"] is None, r["error"]
        same_audio(r, alone[i], f"job {i}")
    wait_for(lambda: [s.in_flight for s in client.stats().slots] == [0], 30, "slot free")
