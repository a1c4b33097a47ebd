"""A worker whose compute loop crashes tells the broker before it exits, and exits non-zero.

No model: the worker classes run on a stand-in engine, their loop made to raise, against a recording
broker (the backend ROUTER and results XSUB, real sockets). The link's heartbeat here is 5 s, so a
Goodbye that arrives within a second was sent on the crash, not on the link's next wake-up.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq

from bench.stack import broker_settings
from broker.protocol import PROTOCOL_VERSION, Codec, ErrorCode, Failed, Goodbye, Heartbeat, Ready
from broker.settings import BrokerSettings
from broker.sockets import closing_context, make_socket
from engine.settings import EngineSettings, WorkerSettings
from engine.workers import main as worker_main
from engine.workers import s3gen, t3
from engine.workers.link import BrokerLink
from engine.workers.main import EXIT_CRASHED, WorkerConfig

PROMPT = 1.0  # s


class RecordingBroker:
    """What a worker sends the broker, in order."""

    def __init__(self, ctx: zmq.Context, settings: BrokerSettings) -> None:
        self.codec = Codec()
        self.backend = make_socket(ctx, zmq.ROUTER)
        self.backend.bind(settings.bind(settings.backend_port))
        self.results = make_socket(ctx, zmq.XSUB)
        self.results.bind(settings.bind(settings.results_in_port))
        self.results.send(b"\x01")  # subscribe to everything, as the broker does: S3Gen waits for it

        self.poller = zmq.Poller()
        self.poller.register(self.backend, zmq.POLLIN)
        self.poller.register(self.results, zmq.POLLIN)  # polling it is what hands a new publisher our subscription

    def next(self, timeout: float = 5.0) -> object:
        """The next message other than a heartbeat."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = dict(self.poller.poll(max(0.0, deadline - time.monotonic()) * 1000))
            if self.backend in events:
                msg, _ = self.codec.decode(self.backend.recv_multipart()[1:])
                if not isinstance(msg, Heartbeat):
                    return msg
        raise AssertionError("nothing from the worker")


@pytest.fixture
def settings() -> BrokerSettings:
    return broker_settings(heartbeat_interval=5.0)


@pytest.fixture
def ctx():
    with closing_context() as ctx:
        yield ctx


def ready(role: str = "t3") -> Ready:
    return Ready(version=PROTOCOL_VERSION, role=role, slot="a", capacity=1, device="cpu", weights="random", pid=1)


def test_a_crash_in_the_loop_sends_what_was_queued_then_goodbye(ctx: zmq.Context, settings: BrokerSettings) -> None:
    broker = RecordingBroker(ctx, settings)
    link = BrokerLink(ctx, settings, ready())
    failed = Failed(job="j", attempt=1, code=ErrorCode.INTERNAL, message="T3 failed")
    with pytest.raises(RuntimeError, match="boom"), link.running():
        assert isinstance(broker.next(), Ready)
        link.send(failed)  # just before the crash: it still goes out, ahead of the Goodbye
        crashed = time.monotonic()
        raise RuntimeError("boom")
    assert broker.next(PROMPT) == failed
    goodbye = broker.next(PROMPT)
    assert isinstance(goodbye, Goodbye) and goodbye.reason == "the t3 loop crashed: RuntimeError('boom')"
    assert time.monotonic() - crashed < PROMPT
    assert not broker.backend.poll(200), "nothing may follow the Goodbye"


def test_a_clean_stop_says_goodbye_too(ctx: zmq.Context, settings: BrokerSettings) -> None:
    broker = RecordingBroker(ctx, settings)
    with BrokerLink(ctx, settings, ready("s3gen")).running():
        assert isinstance(broker.next(), Ready)
    assert broker.next(PROMPT) == Goodbye(reason="stopped")


def config(settings: BrokerSettings, tmp_path: Path) -> WorkerConfig:
    worker = WorkerSettings(slot="a", pipe=f"ipc://{tmp_path}/a.pipe", capacity=1)
    return WorkerConfig(engine=EngineSettings(), worker=worker, broker=settings)


ENGINE = SimpleNamespace(device="cpu", weights="random", model=SimpleNamespace(t3=None))


def crash(self, poller: zmq.Poller) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("role", ["t3", "s3gen"])
def test_each_worker_loop_says_goodbye_when_it_crashes(
    role: str, ctx: zmq.Context, settings: BrokerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(t3, "T3Scheduler", lambda *args, **kwargs: [])  # no model: an empty batch
    worker_class = {"t3": t3.T3Worker, "s3gen": s3gen.S3GenWorker}[role]
    monkeypatch.setattr(worker_class, "_turn", crash)
    broker = RecordingBroker(ctx, settings)
    worker = worker_class(config(settings, tmp_path), ENGINE, ctx, threading.Event())
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            raised.append(exc)

    # On a thread: S3Gen starts only once the broker's results socket has subscribed, which needs this
    # thread to poll it.
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    first = broker.next()
    assert isinstance(first, Ready) and first.role == role
    assert broker.next(PROMPT) == Goodbye(reason=f"the {role} loop crashed: RuntimeError('boom')")
    thread.join(5)
    assert [repr(exc) for exc in raised] == ["RuntimeError('boom')"]  # re-raised: the process exits non-zero


def test_the_process_exits_non_zero_after_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.models.synthesizer

    monkeypatch.setattr(worker_main, "stop_event", threading.Event)  # leave this process's signals alone
    monkeypatch.setattr(engine.models.synthesizer, "Engine", lambda settings, role: ENGINE)

    class Crashing:
        def __init__(self, *args: object) -> None:
            pass

        def run(self) -> None:
            raise RuntimeError("boom")

    class Stopping(Crashing):
        def run(self) -> None:
            pass

    assert worker_main.run_worker("t3", Crashing, [], None) == EXIT_CRASHED != 0
    assert worker_main.run_worker("t3", Stopping, [], None) == 0
