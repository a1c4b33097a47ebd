"""A worker that says Goodbye (its loop crashed) is lost at once, not at heartbeat expiry.

The real broker process, scripted slots and the real client. The expiry here is 10 s and the scripted
worker keeps its sockets open after its Goodbye (no disconnect, no failed send), so only the Goodbye
can explain a job ending within 2 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.stack import Proc, broker_env, broker_settings, wait_for
from broker.client import Client
from broker.protocol import Cancel, ErrorCode
from broker.settings import BrokerSettings
from tests.broker.scripted import ScriptedSlot
from tests.broker.test_broker import live_slots, start_job, take_any

PROMPT = 2.0  # s: a fifth of the expiry


@pytest.fixture
def settings() -> BrokerSettings:
    return broker_settings(heartbeat_interval=0.5, heartbeat_liveness=20)


@pytest.fixture
def client(settings: BrokerSettings, tmp_path: Path):
    assert settings.expiry == 10.0
    broker = Proc(["-m", "broker"], broker_env(settings), tmp_path / "broker.log")
    made: list[ScriptedSlot] = []
    try:
        with Client(settings, chunk_timeout=30) as c:
            yield c, lambda name: made.append(ScriptedSlot(settings, name)) or made[-1]
    finally:
        for slot in made:
            slot.close()
        broker.stop()
        print(broker.text()[-3000:])


def test_goodbye_after_audio_ends_the_job_with_worker_lost_at_once(client) -> None:
    client, slot = client
    a = slot("a")
    wait_for(lambda: "a" in live_slots(client), 5, "slot a live")
    thread, result = start_job(client)
    job = a.next_job()
    a.audio(job, 1)
    wait_for(lambda: result["chunks"], 5, "first chunk")
    said = time.monotonic()
    a.goodbye("t3", "the t3 loop crashed: RuntimeError('boom')")
    wait_for(lambda: result["error"] is not None, PROMPT + 3, "worker_lost")
    assert result["error"].code is ErrorCode.WORKER_LOST and not result["error"].retryable
    elapsed = result["ended_at"] - said
    print(f"worker_lost {elapsed:.3f} s after the Goodbye (expiry {10.0:g} s)")
    assert elapsed < PROMPT
    assert "a" not in live_slots(client)
    # The slot's surviving worker is told to drop the job.
    wait_for(lambda: any(isinstance(m, Cancel) for m in list(a.s3gen_inbox.queue)), 2, "cancel to s3gen")
    thread.join(5)


def test_goodbye_before_audio_redispatches_at_once(client) -> None:
    client, slot = client
    a, b = slot("a"), slot("b")
    wait_for(lambda: len(live_slots(client)) == 2, 5, "two live slots")
    thread, result = start_job(client)
    dead, job = take_any(a, b)
    other = b if dead is a else a
    said = time.monotonic()
    dead.goodbye("s3gen", "the s3gen loop crashed: RuntimeError('boom')")
    retry = other.next_job(timeout=PROMPT + 3)
    assert (retry.job, retry.attempt) == (job.job, 2)
    assert time.monotonic() - said < PROMPT
    other.finish(retry)
    thread.join(5)
    assert result["error"] is None and {c.slot for c in result["chunks"]} == {other.name}
