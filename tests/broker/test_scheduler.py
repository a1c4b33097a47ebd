"""The broker's dispatch rules, checked on `Scheduler` itself: no sockets, no processes, no sleeps.

A recording outbox stands in for the broker's sockets and plain floats for time.monotonic(), so each rule
(least-loaded dispatch, liveness, re-dispatch, `busy`, timeouts, exactly one end per job) is checked at its
exact boundary, in milliseconds. tests/broker/test_broker.py checks the same broker end to end, over ZeroMQ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from broker.protocol import (
    PROTOCOL_VERSION,
    Accepted,
    Audio,
    Cancel,
    Done,
    Error,
    Failed,
    Heartbeat,
    Job,
    Ready,
    Register,
    Role,
    SlotStats,
    Span,
    Submit,
)
from broker.scheduler import Scheduler
from broker.settings import BrokerSettings
from engine.metrics import Metrics
from engine.params import SynthesisParams

# Expiry is 0.5 × 4 = 2.0 s. Every time below is an exact binary fraction, so `now - seen > expiry` and
# `now - received > queue_timeout` are compared exactly at their boundaries.
SETTINGS = BrokerSettings(heartbeat_interval=0.5, heartbeat_liveness=4, max_queue=2, queue_timeout=5.0, max_attempts=2)
EPOCH = "epoch-1"


def t3(slot: str) -> bytes:
    return f"{slot}/t3".encode()


def s3gen(slot: str) -> bytes:
    return f"{slot}/s3gen".encode()


class RecordingOutbox:
    """Records every send; refuses the identities in `unreachable`, as the ROUTER_MANDATORY backend would."""

    def __init__(self) -> None:
        self.workers: list[tuple[bytes, object, tuple[bytes, ...]]] = []
        self.refused: list[tuple[bytes, object]] = []
        self.clients: list[tuple[str, object]] = []  # what each client's SUB would receive, in order
        self.unreachable: set[bytes] = set()

    def to_worker(self, identity: bytes, msg: object, *bulk: bytes) -> bool:
        if identity in self.unreachable:
            self.refused.append((identity, msg))
            return False
        self.workers.append((identity, msg, bulk))
        return True

    def to_client(self, topic: str, msg: object) -> None:
        self.clients.append((topic, msg))


@dataclass(frozen=True)
class Dispatch:
    """One Job message as sent to a T3 worker: where it went and what it said."""

    identity: bytes
    job: Job
    bulk: tuple[bytes, ...]

    @property
    def slot(self) -> str:
        return self.identity.decode().split("/")[0]


class Rig:
    """A scheduler and its outbox, plus the server's share: forwarding the results `result()` lets through."""

    def __init__(self, settings: BrokerSettings = SETTINGS) -> None:
        self.out = RecordingOutbox()
        self.sched = Scheduler(settings, self.out, EPOCH)
        self.submitted: list[str] = []

    # -- workers ------------------------------------------------------------------------------------

    def ready(self, slot: str, role: Role, now: float, capacity: int = 1, identity: bytes | None = None) -> None:
        msg = Ready(
            version=PROTOCOL_VERSION, role=role, slot=slot, capacity=capacity, device="cpu", weights="random", pid=7
        )
        self.sched.from_worker(identity or f"{slot}/{role}".encode(), msg, now)

    def slot(self, name: str, now: float = 0.0, capacity: int = 1) -> None:
        self.ready(name, "t3", now, capacity)
        self.ready(name, "s3gen", now)

    def beat(self, now: float, *slots: str, roles: tuple[Role, ...] = ("t3", "s3gen")) -> None:
        for slot in slots:
            for role in roles:
                self.sched.from_worker(f"{slot}/{role}".encode(), Heartbeat(), now)

    def dispatches(self, job: str) -> list[Dispatch]:
        return [Dispatch(i, m, b) for i, m, b in self.out.workers if isinstance(m, Job) and m.job == job]

    def dispatch_of(self, job: str) -> Dispatch:
        """The job's latest dispatch."""
        sent = self.dispatches(job)
        assert sent, f"{job} was never dispatched"
        return sent[-1]

    def cancels(self, identity: bytes) -> list[str]:
        return [m.job for i, m, _ in self.out.workers if i == identity and isinstance(m, Cancel)]

    def heartbeats(self) -> list[bytes]:
        return [i for i, m, _ in self.out.workers if isinstance(m, Heartbeat)]

    # -- clients ------------------------------------------------------------------------------------

    def submit(
        self,
        job: str,
        now: float,
        client: str = "c1",
        text: str = "hello",
        params: SynthesisParams | None = None,
        reference: bytes | None = None,
        stream: bool = True,
    ) -> object:
        """Submit and return the scheduler's first answer to it (Accepted or Error)."""
        self.submitted.append(job)
        msg = Submit(
            job=job,
            client=client,
            text=text,
            params=params or SynthesisParams(),
            stream=stream,
            has_reference=reference is not None,
        )
        self.sched.submit(msg, reference, now)
        answers = self.to_clients(job)
        assert answers, f"{job} got no answer"
        return answers[0][1]

    def to_clients(self, job: str) -> list[tuple[str, object]]:
        return [(topic, m) for topic, m in self.out.clients if getattr(m, "job", None) == job]

    def endings(self, job: str) -> list[Done | Error]:
        return [m for _, m in self.to_clients(job) if isinstance(m, Done | Error)]

    def ending(self, job: str) -> Done | Error:
        (end,) = self.endings(job)
        return end

    # -- results: S3Gen publishes them, the server forwards those `result()` accepts ------------------

    def _forward(self, d: Dispatch, msg: Audio | Done | Error, now: float) -> bool:
        if forward := self.sched.result(msg, now):
            self.out.clients.append((d.job.client, msg))
        return forward

    def audio(self, d: Dispatch, now: float, seq: int = 1) -> bool:
        msg = Audio(
            job=d.job.job, attempt=d.job.attempt, slot=d.slot, seq=seq, final=False, tokens=1, sample_rate=24000,
            metrics=Metrics(), t3_span=Span(0, 0), s3gen_span=Span(0, 0),
        )  # fmt: skip
        return self._forward(d, msg, now)

    def done(self, d: Dispatch, now: float, audio_seconds: float = 1.0) -> bool:
        metrics = Metrics(audio_seconds=audio_seconds, chunks=1)
        return self._forward(d, Done(job=d.job.job, attempt=d.job.attempt, slot=d.slot, chunks=1, metrics=metrics), now)

    def error(self, d: Dispatch, code: str, now: float) -> bool:
        return self._forward(d, Error(job=d.job.job, code=code, message=code, attempt=d.job.attempt), now)

    # -- reading ------------------------------------------------------------------------------------

    def slot_stats(self, name: str) -> SlotStats:
        (stats,) = [s for s in self.sched.stats().slots if s.name == name]
        return stats

    def check(self) -> None:
        """What must hold after any sequence of events: the client-facing promise and consistent books."""
        for job in self.submitted:
            ends = self.endings(job)
            running = job in self.sched.jobs
            assert len(ends) == (0 if running else 1), f"{job}: {len(ends)} endings, running={running}: {ends}"
            if ends:
                messages = [m for _, m in self.to_clients(job)]
                assert messages[-1] is ends[0], f"{job}: sent to its client after its end: {messages}"
        in_slots = {job: slot.name for slot in self.sched.slots.values() for job in slot.jobs}
        queued = list(self.sched.queue)
        assert len(set(queued)) == len(queued) and not set(queued) & set(in_slots)
        assert set(self.sched.jobs) == set(queued) | set(in_slots)
        for job in queued:
            assert self.sched.jobs[job].slot is None
        for job, name in in_slots.items():
            assert self.sched.jobs[job].slot == name
        for slot in self.sched.slots.values():
            assert len(slot.jobs) <= slot.capacity and (slot.live or not slot.jobs), slot
            assert not (queued and slot.live and len(slot.jobs) < slot.capacity), f"{slot.name} idle with a queue"


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.check()


# -- liveness -------------------------------------------------------------------------------------------


def test_a_slot_is_live_only_once_both_its_workers_are_ready(rig: Rig) -> None:
    """A T3 without its S3Gen would make tokens no one turns into audio: the job waits instead."""
    rig.ready("a", "t3", 0.0, capacity=2)
    assert rig.submit("j1", 0.0) == Accepted(job="j1", queued=True, slot=None)
    assert rig.dispatches("j1") == [] and not rig.slot_stats("a").live
    rig.ready("a", "s3gen", 0.25)
    (d,) = rig.dispatches("j1")
    assert (d.identity, d.job.attempt) == (t3("a"), 1)
    stats = rig.slot_stats("a")
    assert (stats.live, stats.capacity, stats.in_flight, stats.device, stats.weights) == (True, 2, 1, "cpu", "random")
    assert [m for i, m, _ in rig.out.workers if i == s3gen("a")] == []  # S3Gen hears of jobs from T3, not us


def test_a_silent_worker_takes_its_slot_down_until_it_registers_again(rig: Rig) -> None:
    """Registering is not enough: a worker must keep being heard from; once expired, only a new Ready counts."""
    rig.slot("a")
    rig.beat(1.5, "a", roles=("s3gen",))
    rig.sched.tick(2.0, heartbeat=False)  # T3 silent for exactly interval × liveness: still alive
    assert rig.slot_stats("a").live
    rig.sched.tick(2.25, heartbeat=False)
    assert not rig.slot_stats("a").live
    assert rig.submit("j1", 2.25) == Accepted(job="j1", queued=True, slot=None)
    rig.beat(2.5, "a", roles=("t3",))  # the expired T3 is a stranger now
    assert rig.out.workers[-1] == (t3("a"), Register(epoch=EPOCH), ())
    assert not rig.slot_stats("a").live and rig.dispatches("j1") == []
    sent = len(rig.out.workers)
    rig.beat(2.5, "a", roles=("s3gen",))  # the S3Gen was never expired: no Register for it
    assert len(rig.out.workers) == sent
    rig.ready("a", "t3", 2.75)
    assert rig.slot_stats("a").live and rig.dispatch_of("j1").identity == t3("a")


def test_unknown_workers_are_asked_to_register_and_other_protocol_versions_are_ignored(rig: Rig) -> None:
    """After a broker restart every worker is a stranger; a worker of another protocol must get no jobs."""
    rig.sched.from_worker(b"x/t3", Heartbeat(), 0.0)
    assert rig.out.workers == [(b"x/t3", Register(epoch=EPOCH), ())]
    for role in ("t3", "s3gen"):
        msg = Ready(version=PROTOCOL_VERSION + 1, role=role, slot="x", capacity=1, device="", weights="random", pid=1)
        rig.sched.from_worker(f"x/{role}".encode(), msg, 0.0)
    assert rig.sched.stats().slots == [] and rig.sched.workers == {}


# -- dispatch -------------------------------------------------------------------------------------------


def test_least_loaded_dispatch_weighs_in_flight_against_capacity(rig: Rig) -> None:
    """Load is in-flight ÷ capacity, so a bigger slot takes the next job even with as many in flight."""
    rig.slot("a", capacity=2)
    rig.slot("b", capacity=4)
    answers = [rig.submit(f"j{i}", 0.0) for i in range(1, 7)]
    slots = [rig.dispatch_of(f"j{i}").slot for i in range(1, 7)]
    # j1: tie at 0 → name; j3: a 1/2 vs b 1/4 → b (counting in-flight alone, a tie, would pick a);
    # j4: 1/2 each → fewer in flight. Round robin would give a b a b b b.
    assert slots == ["a", "b", "b", "a", "b", "b"]
    assert answers == [Accepted(job=f"j{i}", queued=False, slot=s) for i, s in zip(range(1, 7), slots, strict=True)]
    assert rig.submit("j7", 0.0) == Accepted(job="j7", queued=True, slot=None)
    stats = rig.sched.stats()
    assert [(s.name, s.in_flight) for s in stats.slots] == [("a", 2), ("b", 4)] and stats.queue_depth == 1
    assert rig.done(rig.dispatch_of("j2"), 1.0)
    assert rig.dispatch_of("j7").slot == "b" and rig.sched.stats().queue_depth == 0


def test_the_dispatched_job_carries_the_submit_and_its_reference(rig: Rig) -> None:
    """T3 gets everything it needs in one message; the reference audio travels as a raw frame."""
    rig.slot("a", capacity=2)
    params = SynthesisParams(temperature=0.7, seed=3)
    rig.submit("j1", 0.0, client="c9", text="hi there", params=params, reference=b"RIFFwav", stream=False)
    rig.submit("j2", 0.0)
    d1, d2 = rig.dispatch_of("j1"), rig.dispatch_of("j2")
    assert d1.job == Job(
        job="j1", client="c9", attempt=1, epoch=EPOCH, text="hi there", params=params, stream=False, has_reference=True
    )
    assert d1.bulk == (b"RIFFwav",)
    assert (d2.job.has_reference, d2.job.stream, d2.bulk) == (False, True, ())


def test_busy_when_every_slot_and_the_queue_are_full(rig: Rig) -> None:
    """Past max_queue the broker refuses at once (retryable) rather than letting waits grow without bound."""
    rig.slot("a")
    rig.submit("j1", 0.0)
    assert [rig.submit(j, 0.0) for j in ("j2", "j3")] == [Accepted(job=j, queued=True) for j in ("j2", "j3")]
    busy = rig.submit("j4", 0.0)
    assert isinstance(busy, Error) and (busy.code, busy.retryable) == ("busy", True)
    assert "j4" not in rig.sched.jobs and rig.dispatches("j4") == []
    stats = rig.sched.stats()
    assert (stats.submitted, stats.rejected_busy, stats.failed, stats.queue_depth) == (4, 1, 0, 2)
    # The queue drains first in, first out as the slot frees up.
    assert rig.done(rig.dispatch_of("j1"), 1.0)
    assert rig.dispatch_of("j2").slot == "a" and rig.dispatches("j3") == []
    assert rig.done(rig.dispatch_of("j2"), 2.0)
    assert rig.dispatch_of("j3").slot == "a"


def test_a_worker_that_refuses_the_job_loses_its_slot_and_the_job_goes_elsewhere(rig: Rig) -> None:
    """A send the backend refuses reached no worker: the slot is dead and the try is not an attempt."""
    rig.slot("a")
    rig.slot("b")
    rig.out.unreachable.add(t3("a"))
    rig.submit("j1", 0.0)
    assert [(i, type(m)) for i, m in rig.out.refused] == [(t3("a"), Job)]
    d = rig.dispatch_of("j1")
    assert (d.slot, d.job.attempt) == ("b", 1)
    assert not rig.slot_stats("a").live and t3("a") not in rig.sched.workers


# -- heartbeats and expiry ------------------------------------------------------------------------------


def test_heartbeats_go_to_every_worker_and_an_unreachable_one_loses_its_slot(rig: Rig) -> None:
    """The broker's heartbeat is also its probe: a worker the backend cannot reach is dead."""
    rig.slot("a")
    rig.slot("b")
    rig.submit("j1", 0.0)
    rig.sched.tick(0.5, heartbeat=False)
    assert rig.heartbeats() == []
    rig.sched.tick(0.5, heartbeat=True)
    assert sorted(rig.heartbeats()) == sorted([t3("a"), s3gen("a"), t3("b"), s3gen("b")])
    assert all(m == Heartbeat(epoch=EPOCH) for _, m, _ in rig.out.workers if isinstance(m, Heartbeat))
    rig.out.unreachable.add(s3gen("a"))
    rig.sched.tick(1.0, heartbeat=True)
    assert not rig.slot_stats("a").live and rig.slot_stats("b").live
    assert rig.cancels(t3("a")) == ["j1"]  # the surviving T3 drops it
    retry = rig.dispatch_of("j1")
    assert (retry.slot, retry.job.attempt) == ("b", 2)


def test_a_silent_slot_expires_and_its_job_without_audio_moves_to_another_slot(rig: Rig) -> None:
    """No audio went out, so the client cannot tell a retry from a first try: re-dispatch it."""
    rig.slot("a")
    rig.slot("b")
    rig.submit("j1", 0.0)
    first = rig.dispatch_of("j1")
    assert first.slot == "a"
    rig.beat(1.5, "b")
    rig.sched.tick(2.0, heartbeat=False)
    assert rig.slot_stats("a").live and rig.dispatches("j1") == [first]
    rig.sched.tick(2.25, heartbeat=False)
    assert not rig.slot_stats("a").live and rig.slot_stats("b").live
    retry = rig.dispatch_of("j1")
    assert (retry.slot, retry.job.attempt) == ("b", 2)
    assert "j1" in rig.cancels(s3gen("a"))  # were it only hung, a's S3Gen drops the job
    assert not rig.audio(first, 2.5) and not rig.done(first, 2.5)  # the superseded attempt, heard late
    assert rig.audio(retry, 2.5) and rig.done(retry, 3.0)
    end = rig.ending("j1")
    assert isinstance(end, Done) and end.attempt == 2
    stats = rig.sched.stats()
    assert (stats.completed, stats.failed) == (1, 0)
    assert (rig.slot_stats("a").failed, rig.slot_stats("b").completed) == (1, 1)


def test_a_requeued_job_goes_ahead_of_jobs_that_never_ran(rig: Rig) -> None:
    """It has waited longest and its client may be mid-wait for a first chunk: it takes the next free slot."""
    rig.slot("a")
    rig.slot("b")
    rig.submit("j1", 0.0)
    rig.submit("j2", 0.0)
    rig.submit("j3", 1.0)  # both slots busy: queued
    rig.beat(1.5, "b")
    rig.sched.tick(2.25, heartbeat=False)  # a expires; j1 has nowhere to go yet
    assert list(rig.sched.queue) == ["j1", "j3"]
    assert rig.done(rig.dispatch_of("j2"), 2.5)
    assert (rig.dispatch_of("j1").slot, rig.dispatch_of("j1").job.attempt) == ("b", 2)
    assert rig.dispatches("j3") == []


def test_a_job_is_dispatched_at_most_max_attempts_times(rig: Rig) -> None:
    """Even without audio, a job that killed two slots is not fed to a third."""
    for name in ("a", "b", "c"):
        rig.slot(name)
    rig.submit("j1", 0.0)
    assert rig.dispatch_of("j1").slot == "a"
    rig.beat(1.5, "b", "c")
    rig.sched.tick(2.25, heartbeat=False)
    assert (rig.dispatch_of("j1").slot, rig.dispatch_of("j1").job.attempt) == ("b", 2)
    rig.beat(3.5, "c")
    rig.sched.tick(3.75, heartbeat=False)  # b last heard at 1.5
    end = rig.ending("j1")
    assert isinstance(end, Error) and (end.code, end.attempt, end.slot) == ("worker_lost", 2, "b")
    assert [d.slot for d in rig.dispatches("j1")] == ["a", "b"] and rig.slot_stats("c").live
    assert rig.sched.stats().failed == 1


def test_a_lost_job_that_sent_audio_ends_with_worker_lost_and_other_slots_are_untouched(rig: Rig) -> None:
    """The client already played audio: a retry would repeat it, so the job ends with worker_lost."""
    rig.slot("a")
    rig.slot("b")
    rig.submit("j1", 0.0)
    rig.submit("j2", 0.0)
    d1, d2 = rig.dispatch_of("j1"), rig.dispatch_of("j2")
    assert (d1.slot, d2.slot) == ("a", "b")
    assert rig.audio(d1, 0.5) and rig.audio(d2, 0.5)
    rig.beat(1.5, "a", roles=("s3gen",))
    rig.beat(1.5, "b")
    rig.sched.tick(2.25, heartbeat=False)  # only a's T3 went silent
    end = rig.ending("j1")
    assert isinstance(end, Error) and (end.code, end.slot, end.attempt, end.retryable) == ("worker_lost", "a", 1, False)
    assert rig.dispatches("j1") == [d1] and rig.cancels(s3gen("a")) == ["j1"]
    assert not rig.audio(d1, 2.5, seq=2)
    assert rig.endings("j2") == [] and rig.audio(d2, 2.5, seq=2) and rig.done(d2, 3.0)
    stats = rig.sched.stats()
    assert (stats.completed, stats.failed) == (1, 1)
    assert [(s.name, s.completed, s.failed, s.in_flight) for s in stats.slots] == [("a", 0, 1, 0), ("b", 1, 0, 0)]


def test_a_replaced_worker_gives_its_jobs_to_its_successor(rig: Rig) -> None:
    """A restarted worker (new identity, same slot and role) ran none of the old one's jobs: retry them."""
    rig.slot("a")
    rig.submit("j1", 0.0)
    rig.ready("a", "t3", 1.0, identity=b"a/t3-new")
    retry = rig.dispatch_of("j1")
    assert (retry.identity, retry.job.attempt) == (b"a/t3-new", 2)
    assert rig.cancels(s3gen("a")) == ["j1"]
    rig.beat(1.0, "a", roles=("t3",))  # the old identity
    assert rig.out.workers[-1] == (t3("a"), Register(epoch=EPOCH), ())


# -- time in the queue ----------------------------------------------------------------------------------


def test_a_queued_job_times_out_but_a_running_one_does_not(rig: Rig) -> None:
    """queue_timeout bounds the wait for a slot, not the synthesis itself."""
    rig.slot("a")
    rig.submit("j1", 0.0)
    rig.submit("j2", 1.0)
    rig.beat(4.5, "a")
    rig.sched.tick(6.0, heartbeat=False)  # j2 waited exactly queue_timeout; j1 has run for 6 s
    assert rig.endings("j2") == [] and rig.sched.stats().queue_depth == 1
    rig.sched.tick(6.25, heartbeat=False)
    end = rig.ending("j2")
    assert isinstance(end, Error) and (end.code, end.retryable) == ("timeout", True)
    assert rig.endings("j1") == [] and rig.slot_stats("a").in_flight == 1
    assert rig.done(rig.dispatch_of("j1"), 6.5)
    assert rig.dispatches("j2") == []
    stats = rig.sched.stats()
    assert (stats.completed, stats.failed, stats.queue_depth) == (1, 1, 0)


def test_a_requeued_job_keeps_its_first_deadline(rig: Rig) -> None:
    """The client's wait runs from its submit: a re-dispatch does not restart the queue clock."""
    rig.slot("a")
    rig.submit("j1", 0.0)
    rig.sched.tick(2.25, heartbeat=False)
    assert rig.sched.stats().queue_depth == 1 and rig.endings("j1") == []
    rig.sched.tick(5.0, heartbeat=False)
    assert rig.endings("j1") == []
    rig.sched.tick(5.25, heartbeat=False)
    assert rig.ending("j1").code == "timeout"


# -- clients ending jobs --------------------------------------------------------------------------------


def test_cancel_frees_the_slot_and_tells_both_workers(rig: Rig) -> None:
    """Both workers hold state for a running job; a queued one is only taken off the queue."""
    rig.slot("a")
    rig.submit("j1", 0.0)
    rig.submit("j2", 0.0)
    rig.submit("j3", 0.0)
    d1 = rig.dispatch_of("j1")
    rig.sched.cancel("j3")
    assert rig.ending("j3").code == "cancelled" and rig.sched.stats().queue_depth == 1
    rig.sched.cancel("j1")
    end = rig.ending("j1")
    assert isinstance(end, Error) and (end.code, end.attempt, end.retryable) == ("cancelled", 1, False)
    assert rig.cancels(t3("a")) == ["j1"] and rig.cancels(s3gen("a")) == ["j1"]
    assert rig.dispatch_of("j2").slot == "a"
    assert not rig.audio(d1, 0.5) and not rig.done(d1, 0.5)
    sent = (len(rig.out.workers), len(rig.out.clients))
    rig.sched.cancel("j1")  # ended already
    rig.sched.cancel("nobody")
    assert (len(rig.out.workers), len(rig.out.clients)) == sent
    stats = rig.sched.stats()
    assert (stats.failed, stats.completed, rig.slot_stats("a").failed, rig.slot_stats("a").in_flight) == (0, 0, 0, 1)


def test_client_gone_cancels_only_that_clients_jobs(rig: Rig) -> None:
    """Audio for a client whose subscription vanished plays to no one; the slot goes to whoever is left."""
    rig.slot("a", capacity=2)
    rig.sched.subscribed |= {"c1", "c2"}
    rig.submit("j1", 0.0, client="c1")
    rig.submit("j2", 0.0, client="c2")
    rig.submit("j3", 0.0, client="c1")
    rig.submit("j4", 0.0, client="c2")
    d2 = rig.dispatch_of("j2")
    rig.sched.client_gone("c1")
    assert rig.sched.subscribed == {"c2"}
    for job in ("j1", "j3"):
        ((topic, end),) = [(t, m) for t, m in rig.to_clients(job) if isinstance(m, Error)]
        assert (topic, end.code) == ("c1", "cancelled")
    # Whatever of c1's reached the slot (j3 may, in the moment j1's cancel frees room) is cancelled there.
    for job in ("j1", "j3"):
        if rig.dispatches(job):
            assert job in rig.cancels(t3("a")) and job in rig.cancels(s3gen("a"))
    assert rig.dispatches("j1") and rig.dispatch_of("j4").slot == "a"
    assert rig.slot_stats("a").in_flight == 2 and rig.sched.stats().failed == 0
    assert rig.endings("j2") == [] and rig.done(d2, 1.0)


# -- results --------------------------------------------------------------------------------------------


def test_failed_from_t3_ends_the_job_and_bad_input_does_not_count_against_the_slot(rig: Rig) -> None:
    """T3's own failure is the slot's fault; input the model rejects is the client's."""
    rig.slot("a", capacity=2)
    rig.submit("j1", 0.0)
    rig.submit("j2", 0.0)
    d1 = rig.dispatch_of("j1")
    rig.sched.from_worker(t3("a"), Failed(job="j1", attempt=2, code="internal", message="boom"), 0.5)
    assert rig.endings("j1") == []  # not the attempt that is running
    rig.sched.from_worker(t3("a"), Failed(job="j1", attempt=1, code="internal", message="boom"), 0.5)
    assert rig.ending("j1") == Error(job="j1", code="internal", message="boom", attempt=1, slot="a")
    assert rig.cancels(t3("a")) == ["j1"] and rig.cancels(s3gen("a")) == ["j1"]
    assert not rig.done(d1, 1.0)
    failed = Failed(job="j2", attempt=1, code="invalid_input", message="text: too long", field="text")
    rig.sched.from_worker(t3("a"), failed, 0.5)
    assert rig.ending("j2") == Error(
        job="j2", code="invalid_input", message="text: too long", field="text", attempt=1, slot="a"
    )
    assert (rig.slot_stats("a").failed, rig.slot_stats("a").in_flight) == (1, 0)


def test_results_are_dropped_once_the_job_ended_or_while_it_waits_for_a_retry(rig: Rig) -> None:
    """Only the running attempt of a running job reaches the client: one end, nothing after it."""
    rig.slot("a")
    stray = Done(job="nope", attempt=1, slot="a", chunks=1, metrics=Metrics())
    assert not rig.sched.result(stray, 0.0)
    rig.submit("j1", 0.0)
    d1 = rig.dispatch_of("j1")
    assert rig.done(d1, 1.0)
    assert not rig.audio(d1, 1.5) and not rig.done(d1, 1.5) and not rig.error(d1, "gap", 1.5)
    assert rig.sched.stats().completed == 1
    rig.submit("j2", 1.5)
    d2 = rig.dispatch_of("j2")
    rig.sched.tick(2.25, heartbeat=False)  # a expires, no other slot: j2 waits, its attempt number unchanged
    assert rig.sched.jobs["j2"].attempt == d2.job.attempt
    assert not rig.audio(d2, 2.5) and not rig.done(d2, 2.5)


def test_stats_count_outcomes_and_time_first_audio_and_rtf_from_submit(rig: Rig) -> None:
    """Latency and RTF are what the client lived through: measured from its submit, first audio only."""
    rig.slot("a", capacity=2)
    rig.slot("b")
    assert (rig.slot_stats("a").mean_first_chunk_latency, rig.slot_stats("a").mean_rtf) == (None, None)
    bad = rig.submit("bad", 0.0, params=SynthesisParams(temperature=99.0))
    assert isinstance(bad, Error) and (bad.code, bad.field) == ("invalid_input", "temperature")
    empty = rig.submit("empty", 0.0, reference=b"")
    assert isinstance(empty, Error) and (empty.code, empty.field) == ("invalid_input", "audio_prompt")
    for job in ("j1", "j2", "j3"):
        rig.submit(job, 10.0)
    d1, d2, d3 = (rig.dispatch_of(j) for j in ("j1", "j2", "j3"))
    assert (d1.slot, d2.slot, d3.slot) == ("a", "b", "a")
    assert rig.audio(d1, 10.5) and rig.audio(d1, 11.5, seq=2) and rig.done(d1, 12.0, audio_seconds=1.0)
    assert rig.error(d2, "gap", 11.0)  # an error S3Gen sent: forwarded, and counted
    assert rig.sched.stats().slots[0].in_flight == 1
    assert rig.done(d3, 12.0, audio_seconds=0.0)  # no audio: completed, but no RTF to average
    stats = rig.sched.stats()
    assert (stats.epoch, stats.submitted, stats.completed, stats.failed, stats.rejected_busy) == (EPOCH, 5, 2, 3, 0)
    assert (stats.queue_depth, stats.queue_limit) == (0, 2)
    a, b = stats.slots
    assert (a.name, a.in_flight, a.completed, a.failed) == ("a", 0, 2, 0)
    assert (a.mean_first_chunk_latency, a.mean_rtf) == (0.5, 2.0)
    assert (b.name, b.in_flight, b.completed, b.failed) == ("b", 0, 0, 1)
    assert (b.mean_first_chunk_latency, b.mean_rtf) == (None, None)
