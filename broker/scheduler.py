"""The broker's bookkeeping, free of sockets: slots, jobs, the wait queue, liveness, stats.

The socket loop (broker/server.py) feeds it events and gives it an `Outbox` to send through, so every
rule here — least-loaded dispatch, expiry, re-dispatch, `busy`, exactly one end per job — is plain
code over plain state.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from broker.dispatch import Dispatcher
from broker.protocol import (
    PROTOCOL_VERSION,
    Accepted,
    Audio,
    Cancel,
    Done,
    Error,
    ErrorCode,
    Failed,
    Goodbye,
    Heartbeat,
    Job,
    Ready,
    Register,
    Role,
    SlotStats,
    Stats,
    Submit,
)
from broker.settings import BrokerSettings
from engine.errors import InvalidInput
from engine.metrics import Weights

log = logging.getLogger(__name__)


class Outbox(Protocol):
    def to_worker(self, identity: bytes, msg: object, *bulk: bytes) -> bool:
        """False when the worker is unreachable (ROUTER_MANDATORY said so)."""

    def to_client(self, topic: str, msg: object) -> None: ...


@dataclass(slots=True)
class WorkerRef:
    identity: bytes
    seen: float
    pid: int


@dataclass(slots=True)
class JobRecord:
    submit: Submit
    reference: bytes | None
    received: float
    attempt: int = 0
    slot: str | None = None
    audio_sent: bool = False
    first_audio: float | None = None


@dataclass(slots=True)
class Slot:
    name: str
    capacity: int = 1
    device: str = ""
    weights: Weights | None = None
    t3: WorkerRef | None = None
    s3gen: WorkerRef | None = None
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0
    rtf_sum: float = 0.0
    rtf_n: int = 0

    @property
    def live(self) -> bool:
        return self.t3 is not None and self.s3gen is not None

    @property
    def load(self) -> float:
        return len(self.jobs) / max(self.capacity, 1)

    def worker(self, role: Role) -> WorkerRef | None:
        return self.t3 if role == "t3" else self.s3gen

    def stats(self) -> SlotStats:
        return SlotStats(
            name=self.name,
            live=self.live,
            capacity=self.capacity,
            in_flight=len(self.jobs),
            completed=self.completed,
            failed=self.failed,
            mean_first_chunk_latency=self.latency_sum / self.latency_n if self.latency_n else None,
            mean_rtf=self.rtf_sum / self.rtf_n if self.rtf_n else None,
            device=self.device,
            weights=self.weights,
        )


class Scheduler:
    def __init__(self, settings: BrokerSettings, outbox: Outbox, epoch: str) -> None:
        self.settings = settings
        self.out = outbox
        self.epoch = epoch
        self._from_worker = Dispatcher(
            "broker backend",
            {Ready: self._ready, Heartbeat: self._heartbeat, Failed: self._failed, Goodbye: self._goodbye},
        )
        self.slots: dict[str, Slot] = {}
        self.workers: dict[bytes, tuple[str, Role]] = {}  # identity → (slot, role)
        self.jobs: dict[str, JobRecord] = {}  # every job not yet ended, queued or dispatched
        self.queue: deque[str] = deque()
        self.subscribed: set[str] = set()
        self.submitted = self.completed = self.failed = self.rejected_busy = 0

    # -- clients ------------------------------------------------------------------------------------

    def submit(self, msg: Submit, reference: bytes | None, now: float) -> None:
        self.submitted += 1
        if msg.job in self.jobs:
            duplicate = Error(job=msg.job, code=ErrorCode.INVALID_INPUT, field="job", message="duplicate")
            self.out.to_client(msg.client, duplicate)
            return
        try:
            msg.params.validated()
            if msg.has_reference and not reference:
                raise InvalidInput("audio_prompt", "is empty")
        except InvalidInput as exc:
            self.failed += 1
            error = Error(job=msg.job, code=ErrorCode.INVALID_INPUT, message=str(exc), field=exc.field)
            self.out.to_client(msg.client, error)
            return
        if not self._free_slot() and len(self.queue) >= self.settings.max_queue:
            self.rejected_busy += 1
            self.out.to_client(
                msg.client,
                Error(job=msg.job, code=ErrorCode.BUSY, message="every slot is busy and the queue is full"),
            )
            return
        self.jobs[msg.job] = JobRecord(submit=msg, reference=reference, received=now)
        self.queue.append(msg.job)
        slot = self._free_slot()
        self.out.to_client(msg.client, Accepted(job=msg.job, queued=slot is None, slot=slot.name if slot else None))
        self.dispatch()

    def cancel(self, job_id: str) -> None:
        record = self.jobs.get(job_id)
        if record is None:
            return
        self._end(record, Error(job=job_id, code=ErrorCode.CANCELLED, message="cancelled by the client"), failed=False)

    def client_gone(self, topic: str) -> None:
        """The client's subscription went away (it disconnected): its jobs would play to no one."""
        self.subscribed.discard(topic)
        for record in [r for r in self.jobs.values() if r.submit.client == topic]:
            log.info("client %s went away; cancelling %s", topic, record.submit.job)
            self.cancel(record.submit.job)

    # -- workers ------------------------------------------------------------------------------------

    def from_worker(self, identity: bytes, msg: object, now: float) -> None:
        self._from_worker(msg, identity, now)

    def _heard(self, identity: bytes, now: float, register: bool = True) -> tuple[Slot, Role] | None:
        """The sender's slot and role, its liveness refreshed; None for a worker this broker does not know."""
        known = self.workers.get(identity)
        if known is None:
            # Restarted broker, or a worker we expired: it must introduce itself again (unless it is leaving).
            if register:
                self.out.to_worker(identity, Register(epoch=self.epoch))
            return None
        slot = self.slots[known[0]]
        ref = slot.worker(known[1])
        if ref is not None:
            ref.seen = now
        return slot, known[1]

    def _heartbeat(self, msg: Heartbeat, identity: bytes, now: float) -> None:
        self._heard(identity, now)

    def _failed(self, msg: Failed, identity: bytes, now: float) -> None:
        heard = self._heard(identity, now)
        if heard is None:
            return
        slot = heard[0]
        record = slot.jobs.get(msg.job)
        if record is not None and record.attempt == msg.attempt:
            error = Error(job=msg.job, code=msg.code, message=msg.message, field=msg.field, slot=slot.name)
            self._end(record, error, failed=msg.code != ErrorCode.INVALID_INPUT)

    def _goodbye(self, msg: Goodbye, identity: bytes, now: float) -> None:
        heard = self._heard(identity, now, register=False)
        if heard is not None:
            # Its loop ended (a crash, or a signal): lost now, not at heartbeat expiry.
            slot, role = heard
            log.warning("slot %s: %s says goodbye: %s", slot.name, role, msg.reason)
            self._lose(slot, role)

    def _ready(self, msg: Ready, identity: bytes, now: float) -> None:
        if msg.version != PROTOCOL_VERSION:
            log.error("worker %s speaks protocol %d, not %d; ignored", identity, msg.version, PROTOCOL_VERSION)
            return
        slot = self.slots.setdefault(msg.slot, Slot(name=msg.slot))
        old = slot.worker(msg.role)
        if old is not None and old.identity != identity:
            log.warning("slot %s: %s replaced (pid %d → %d)", msg.slot, msg.role, old.pid, msg.pid)
            self._lose(slot, msg.role)
        ref = WorkerRef(identity=identity, seen=now, pid=msg.pid)
        if msg.role == "t3":
            slot.t3, slot.capacity = ref, max(msg.capacity, 1)
        else:
            slot.s3gen = ref
        slot.device, slot.weights = msg.device, msg.weights
        self.workers[identity] = (msg.slot, msg.role)
        log.info("slot %s: %s ready (pid %d, %s, weights %s)", msg.slot, msg.role, msg.pid, msg.device, msg.weights)
        self.dispatch()

    def _lose(self, slot: Slot, role: Role) -> None:
        """A worker died or was replaced: re-dispatch what sent no audio, fail the rest."""
        ref = slot.worker(role)
        if ref is None:
            return
        self.workers.pop(ref.identity, None)
        if role == "t3":
            slot.t3 = None
        else:
            slot.s3gen = None
        for record in list(slot.jobs.values()):
            job = record.submit.job
            self._tell_slot(slot, Cancel(job=job))  # the surviving worker drops the job too
            del slot.jobs[job]
            slot.failed += 1
            if not record.audio_sent and record.attempt < self.settings.max_attempts:
                log.warning("slot %s lost its %s; re-dispatching %s", slot.name, role, job)
                record.slot = None
                self.queue.appendleft(job)
            else:
                message = f"slot {slot.name} lost its {role} worker"
                error = Error(job=job, code=ErrorCode.WORKER_LOST, message=message, slot=slot.name)
                self._end(record, error, failed=True, counted=True)
        self.dispatch()

    # -- results ------------------------------------------------------------------------------------

    def result(self, msg: Audio | Done | Error, now: float) -> bool:
        """A result on its way to a client: update state; True to forward it, False to drop it."""
        record = self.jobs.get(msg.job)
        if record is None or record.slot is None or msg.attempt != record.attempt:
            return False  # ended (cancelled, failed over, timed out) or from a superseded attempt
        slot = self.slots[record.slot]
        if isinstance(msg, Audio):
            if not record.audio_sent:
                record.audio_sent = True
                record.first_audio = now
                slot.latency_sum += now - record.received
                slot.latency_n += 1
            return True
        self._finish(record, slot, msg, now)
        return True

    def _finish(self, record: JobRecord, slot: Slot, msg: Done | Error, now: float) -> None:
        slot.jobs.pop(record.submit.job, None)
        self.jobs.pop(record.submit.job, None)
        if isinstance(msg, Done):
            slot.completed += 1
            self.completed += 1
            if msg.metrics.audio_seconds > 0:
                slot.rtf_sum += (now - record.received) / msg.metrics.audio_seconds
                slot.rtf_n += 1
        else:
            slot.failed += 1
            self.failed += 1
        self.dispatch()

    # -- time ---------------------------------------------------------------------------------------

    def tick(self, now: float, heartbeat: bool) -> None:
        """Expire silent workers, time out queued jobs, and (every interval) heartbeat the workers."""
        expiry = self.settings.expiry
        for slot in self.slots.values():
            for role in ("t3", "s3gen"):
                ref = slot.worker(role)
                if ref is not None and now - ref.seen > expiry:
                    log.warning("slot %s: %s (pid %d) silent for %.1f s; expired", slot.name, role, ref.pid, expiry)
                    self._lose(slot, role)
        for job in list(self.queue):
            record = self.jobs[job]
            if now - record.received > self.settings.queue_timeout:
                self.queue.remove(job)
                message = f"no slot became free within {self.settings.queue_timeout:g} s"
                self._end(record, Error(job=job, code=ErrorCode.TIMEOUT, message=message), failed=True)
        if heartbeat:
            for identity in list(self.workers):
                if not self.out.to_worker(identity, Heartbeat(epoch=self.epoch)):
                    self._unreachable(identity)

    # -- dispatch -----------------------------------------------------------------------------------

    def _free_slot(self) -> Slot | None:
        """The least-loaded live slot with room, by in-flight jobs against capacity."""
        free = [s for s in self.slots.values() if s.live and len(s.jobs) < s.capacity]
        return min(free, key=lambda s: (s.load, len(s.jobs), s.name), default=None)

    def dispatch(self) -> None:
        while self.queue:
            slot = self._free_slot()
            if slot is None:
                return
            job = self.queue.popleft()
            record = self.jobs[job]
            record.attempt += 1
            record.slot = slot.name
            slot.jobs[job] = record
            s = record.submit
            msg = Job(
                job=job,
                client=s.client,
                attempt=record.attempt,
                epoch=self.epoch,
                text=s.text,
                params=s.params,
                stream=s.stream,
                has_reference=record.reference is not None,
            )
            bulk = (record.reference,) if record.reference is not None else ()
            assert slot.t3 is not None
            if not self.out.to_worker(slot.t3.identity, msg, *bulk):
                record.attempt -= 1  # never reached a worker: not an attempt
                self._unreachable(slot.t3.identity)

    def _unreachable(self, identity: bytes) -> None:
        known = self.workers.get(identity)
        if known is not None:
            self._lose(self.slots[known[0]], known[1])

    # -- endings ------------------------------------------------------------------------------------

    def _end(self, record: JobRecord, error: Error, *, failed: bool, counted: bool = False) -> None:
        """End a job with an error the broker itself sends, exactly once."""
        job = record.submit.job
        self.jobs.pop(job, None)
        if job in self.queue:
            self.queue.remove(job)
        if record.slot is not None:
            slot = self.slots[record.slot]
            if slot.jobs.pop(job, None) is not None:
                self._tell_slot(slot, Cancel(job=job))
                if failed and not counted:
                    slot.failed += 1
        if failed:
            self.failed += 1
        error.attempt = record.attempt
        self.out.to_client(record.submit.client, error)
        self.dispatch()

    def _tell_slot(self, slot: Slot, msg: Cancel) -> None:
        for ref in (slot.t3, slot.s3gen):
            if ref is not None:
                self.out.to_worker(ref.identity, msg)

    def stats(self) -> Stats:
        return Stats(
            epoch=self.epoch,
            slots=[s.stats() for s in sorted(self.slots.values(), key=lambda s: s.name)],
            queue_depth=len(self.queue),
            queue_limit=self.settings.max_queue,
            submitted=self.submitted,
            completed=self.completed,
            failed=self.failed,
            rejected_busy=self.rejected_busy,
            unexpected_messages=self._from_worker.unknown,
        )
