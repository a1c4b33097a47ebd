"""The broker process with scripted workers and the real client: dispatch, liveness, faults, stats."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import zmq

from bench.stack import Proc, broker_env, broker_settings, wait_for
from broker.client import Client, JobError
from broker.protocol import Cancel, Codec, Error, Job, Submit
from broker.settings import BrokerSettings
from broker.sockets import closing_context, make_socket
from tests.broker.scripted import ScriptedSlot


@pytest.fixture
def settings() -> BrokerSettings:
    # Short heartbeats keep expiry tests quick (1 s, so a loaded machine does not expire a healthy
    # scripted slot); max_queue 2 makes `busy` easy to reach.
    return broker_settings(heartbeat_interval=0.1, heartbeat_liveness=10, max_queue=2, queue_timeout=5.0)


@pytest.fixture
def broker(settings: BrokerSettings, tmp_path: Path):
    proc = Proc(["-m", "broker"], broker_env(settings), tmp_path / "broker.log")
    yield proc
    proc.stop()
    print(proc.text()[-3000:])


@pytest.fixture
def client(settings: BrokerSettings, broker: Proc):
    with Client(settings, chunk_timeout=10) as c:
        yield c


@pytest.fixture
def slots(settings: BrokerSettings):
    made: list[ScriptedSlot] = []

    def make(name: str, capacity: int = 1, auto_chunks: int = 0) -> ScriptedSlot:
        made.append(ScriptedSlot(settings, name, capacity, auto_chunks))
        return made[-1]

    yield make
    for slot in made:
        slot.close()


def live_slots(client: Client) -> dict[str, object]:
    return {s.name: s for s in client.stats().slots if s.live}


def start_job(client: Client, text: str = "hello", **kwargs) -> tuple[threading.Thread, dict]:
    """Consume one stream in a thread; the dict gets 'chunks' and 'error' as it goes."""
    result: dict = {"chunks": [], "error": None, "ended_at": None}

    def run() -> None:
        try:
            for chunk in client.stream(text, **kwargs):
                result["chunks"].append(chunk)
        except JobError as exc:
            result["error"] = exc
        result["ended_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_job_round_trip_and_stats(client: Client, slots) -> None:
    a = slots("a")
    wait_for(lambda: "a" in live_slots(client), 5, "slot a live")
    thread, result = start_job(client, "hello", temperature=0.7)
    job = a.next_job()
    assert job.text == "hello" and job.params.temperature == 0.7 and job.attempt == 1
    a.finish(job, chunks=3)
    thread.join(5)
    assert not thread.is_alive() and result["error"] is None
    assert [c.seq for c in result["chunks"]] == [1, 2, 3] and result["chunks"][-1].final
    stats = client.stats()
    (slot,) = stats.slots
    assert (slot.completed, slot.in_flight, slot.failed) == (1, 0, 0)
    assert slot.mean_first_chunk_latency is not None and slot.mean_rtf is not None
    assert (stats.submitted, stats.completed) == (1, 1)


def test_busy_when_slots_and_queue_are_full(client: Client, slots) -> None:
    a = slots("a")
    wait_for(lambda: "a" in live_slots(client), 5, "slot a live")
    held = [start_job(client, f"job {i}") for i in range(3)]  # one running, two queued (max_queue 2)
    first = a.next_job()
    wait_for(lambda: client.stats().queue_depth == 2, 5, "two queued")
    with pytest.raises(JobError) as err:
        list(client.stream("one too many"))
    assert err.value.code == "busy" and err.value.retryable
    assert client.stats().rejected_busy == 1
    a.finish(first)
    for _ in range(2):
        a.finish(a.next_job())
    for thread, result in held:
        thread.join(5)
        assert not thread.is_alive() and result["error"] is None and result["chunks"]


def take_any(*slots: ScriptedSlot) -> tuple[ScriptedSlot, Job]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for slot in slots:
            if not slot.inbox.empty():
                return slot, slot.next_job()
        time.sleep(0.02)
    raise AssertionError("no slot got the job")


def test_expiry_redispatches_a_job_that_sent_no_audio(client: Client, slots, settings: BrokerSettings) -> None:
    a, b = slots("a"), slots("b")
    wait_for(lambda: len(live_slots(client)) == 2, 5, "two live slots")
    thread, result = start_job(client)
    dead, job = take_any(a, b)
    other = b if dead is a else a
    silenced = time.monotonic()
    dead.silence()
    retry = other.next_job(timeout=settings.expiry + 3)
    assert retry.job == job.job and retry.attempt == 2
    assert time.monotonic() - silenced < settings.expiry + 3
    assert dead.name not in live_slots(client)
    dead.audio(job, 1)  # a late chunk from the superseded attempt must not reach the client
    other.finish(retry)
    thread.join(5)
    assert result["error"] is None
    assert {c.slot for c in result["chunks"]} == {other.name} and len(result["chunks"]) == 2


def test_worker_lost_after_audio_is_an_error_and_other_slots_are_untouched(
    client: Client, slots, settings: BrokerSettings
) -> None:
    a, b = slots("a"), slots("b")
    wait_for(lambda: len(live_slots(client)) == 2, 5, "two live slots")
    t1, r1 = start_job(client, "one")
    t2, r2 = start_job(client, "two")
    s1, j1 = take_any(a, b)
    s2, j2 = take_any(a, b)
    assert s1 is not s2
    for slot, job in ((s1, j1), (s2, j2)):
        slot.audio(job, 1)
    wait_for(lambda: r1["chunks"] and r2["chunks"], 5, "first chunks")
    victim, victim_result = (s1, r1) if j1.text == "one" else (s2, r2)
    survivor = s2 if victim is s1 else s1
    silenced = time.monotonic()
    # Only T3 dies, so which worker survives is known: with both silenced, either may expire first.
    victim.silence("t3")
    wait_for(lambda: victim_result["error"] is not None, settings.expiry + 3, "worker_lost")
    assert victim_result["error"].code == "worker_lost"
    assert victim_result["ended_at"] - silenced < settings.expiry + 3
    # The surviving worker of the dead slot is told to drop the job (its socket is read every 10 ms).
    wait_for(lambda: any(isinstance(m, Cancel) for m in list(victim.s3gen_inbox.queue)), 2, "cancel to s3gen")
    other_job = j2 if survivor is s2 else j1
    survivor.audio(other_job, 2, final=True)
    survivor.done(other_job, 2)
    for thread in (t1, t2):
        thread.join(5)
    other_result = r2 if victim_result is r1 else r1
    assert other_result["error"] is None and len(other_result["chunks"]) == 2
    assert {s.name: s.failed for s in client.stats().slots}[victim.name] == 1


def test_cancel_reaches_the_worker_and_frees_the_slot(client: Client, slots) -> None:
    a = slots("a")
    wait_for(lambda: "a" in live_slots(client), 5, "slot a live")
    stream = client.stream("to be cancelled")
    thread = threading.Thread(target=lambda: next(stream, None), daemon=True)
    thread.start()
    job = a.next_job()
    a.audio(job, 1)
    thread.join(5)
    stream.close()  # leaving the loop early cancels
    cancel = a.inbox.get(timeout=5)
    assert isinstance(cancel, Cancel) and cancel.job == job.job
    wait_for(lambda: client.stats().slots[0].in_flight == 0, 5, "slot freed")
    t, r = start_job(client, "next")
    a.finish(a.next_job())
    t.join(5)
    assert r["error"] is None


def test_client_that_dies_cancels_its_jobs(settings: BrokerSettings, broker: Proc, slots, tmp_path: Path) -> None:
    a = slots("a")
    with Client(settings) as watcher:
        wait_for(lambda: "a" in live_slots(watcher), 5, "slot a live")
        # A separate client process, killed with no chance to say goodbye: the broker sees its
        # subscription vanish and cancels its job.
        leaver = Proc(
            ["-m", "broker.client", "abandoned", "-o", str(tmp_path / "x.wav")],
            broker_env(settings),
            tmp_path / "c.log",
        )
        job = a.next_job(timeout=15)
        leaver.kill()
        cancel = a.inbox.get(timeout=5)
        assert isinstance(cancel, Cancel) and cancel.job == job.job
        wait_for(lambda: watcher.stats().slots[0].in_flight == 0, 5, "slot freed")


def test_sequence_gap_ends_the_job_with_an_error(client: Client, slots) -> None:
    a = slots("a")
    wait_for(lambda: "a" in live_slots(client), 5, "slot a live")
    thread, result = start_job(client)
    job = a.next_job()
    a.audio(job, 1)
    a.audio(job, 3)  # chunk 2 lost
    thread.join(5)
    assert result["error"] is not None and result["error"].code == "gap"
    assert len(result["chunks"]) == 1


def test_broker_restart(settings: BrokerSettings, broker: Proc, slots) -> None:
    a = slots("a")
    with Client(settings, chunk_timeout=10) as client:
        wait_for(lambda: "a" in live_slots(client), 5, "slot a live")
        thread, result = start_job(client)
        job = a.next_job()
        a.audio(job, 1)
        wait_for(lambda: result["chunks"], 5, "first chunk")
        broker.kill()
        killed = time.monotonic()
        thread.join(settings.expiry + 5)
        assert result["error"] is not None and result["error"].code == "broker_lost"
        assert result["ended_at"] - killed < settings.expiry + 4
        broker.start()
        # The scripted workers are asked to register again; the client reconnects by itself.
        wait_for(lambda: a.registers >= 1, 10, "register request")
        wait_for(lambda: "a" in live_slots(client), 10, "slot a live again")
        thread, result = start_job(client, "after restart")
        a.finish(a.next_job())
        thread.join(5)
        assert result["error"] is None and len(result["chunks"]) == 2


def test_a_submit_the_broker_cannot_answer_is_refused_and_the_client_resubmits(
    settings: BrokerSettings, client: Client, slots
) -> None:
    """After a broker restart a client's DEALER may reach the new broker before its SUB does, and the
    job's results would go nowhere. The broker refuses such a submit on the frontend; the client
    waits until it is subscribed again and submits once more."""
    a = slots("a", auto_chunks=2)
    wait_for(lambda: "a" in live_slots(client), 5, "slot a live")
    codec = Codec()
    with closing_context() as ctx:
        raw = make_socket(ctx, zmq.DEALER)
        raw.connect(settings.connect(settings.frontend_port))
        raw.send_multipart(codec.encode(Submit(job="j-raw", client="never-subscribed", text="hi")))
        assert raw.poll(5000), "no answer on the frontend"
        refused, _ = codec.decode(raw.recv_multipart())
    assert isinstance(refused, Error) and (refused.job, refused.code) == ("j-raw", "unsubscribed")
    assert refused.retryable and client.stats().submitted == 0  # the broker kept nothing of it

    # The real client, its subscription withdrawn and restored half a second later (on the client's
    # own event loop: sockets are not thread-safe), submitting while it still believes it subscribed,
    # as it would just after a restart: refused, it waits for the subscription and submits again.
    loop, sub, topic = client._loop, client._async._sub, client.id.encode()
    loop.call_soon_threadsafe(sub.setsockopt, zmq.UNSUBSCRIBE, topic)
    wait_for(lambda: not client._async._subscribed.is_set(), 5, "the broker to report us unsubscribed")
    loop.call_soon_threadsafe(loop.call_later, 0.5, sub.setsockopt, zmq.SUBSCRIBE, topic)

    async def stream_believing_subscribed() -> list:
        client._async._subscribed.set()
        return [chunk async for chunk in client._async.stream("after the gap")]

    chunks = client._call(stream_believing_subscribed())
    assert [c.seq for c in chunks] == [1, 2] and chunks[-1].final
    assert [j.text for j in a.answered] == ["after the gap"]  # dispatched once
    stats = client.stats()
    assert (stats.submitted, stats.completed) == (1, 1)
