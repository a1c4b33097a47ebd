"""What both worker entry points share: arguments, logging, signals, settings."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

import msgspec
import zmq

from broker.protocol import PROTOCOL_VERSION, Ready, Role
from broker.settings import BrokerSettings
from engine.settings import EngineSettings, WorkerSettings

if TYPE_CHECKING:
    from engine.models.synthesizer import Engine

log = logging.getLogger(__name__)
EXIT_CRASHED = 1


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True):
    engine: EngineSettings
    worker: WorkerSettings
    broker: BrokerSettings


def parse(role: str, argv: list[str] | None, doc: str | None) -> WorkerConfig:
    p = argparse.ArgumentParser(prog=f"python -m engine.workers.{role}", description=doc)
    p.add_argument("--slot", help="slot name, shared by the slot's T3 and S3Gen workers (default cpu0)")
    p.add_argument("--device", help="cuda:N or cpu (default CHATTERBOX_DEVICE, else cpu)")
    p.add_argument("--pipe", help="the slot's T3 → S3Gen endpoint (default an ipc socket named after the slot)")
    p.add_argument("--capacity", type=int, help="jobs the slot takes at once (default 8)")
    p.add_argument("--broker-host", help="where the broker runs (default 127.0.0.1)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {role}: %(message)s")
    return WorkerConfig(
        engine=EngineSettings.from_env(device=args.device),
        worker=WorkerSettings.from_env(slot=args.slot, pipe=args.pipe, capacity=args.capacity),
        broker=BrokerSettings.from_env(host=args.broker_host),
    )


def ready_message(role: Role, config: WorkerConfig, engine: Engine) -> Ready:
    """How a worker introduces itself to the broker (and again whenever the broker asks)."""
    return Ready(
        version=PROTOCOL_VERSION, role=role, slot=config.worker.slot, capacity=config.worker.capacity,
        device=engine.device, weights=engine.weights, pid=os.getpid(),
    )  # fmt: skip


def stop_event() -> threading.Event:
    """Set on SIGTERM or SIGINT; the loop finishes its current step and exits."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    return stop


def run_worker(role: Role, worker_class, argv: list[str] | None, doc: str | None) -> int:
    """Parse settings, load this role's half of the model, run the worker loop until a signal.
    0 after a signal; EXIT_CRASHED when the loop raised (the broker has had our Goodbye by then)."""
    config = parse(role, argv, doc)
    stop = stop_event()
    from engine.models.synthesizer import Engine  # torch loads here, after arguments are known to be good

    engine = Engine(config.engine, role=role)
    ctx = zmq.Context()
    try:
        worker_class(config, engine, ctx, stop).run()
    except Exception:
        log.exception("the %s worker crashed", role)
        return EXIT_CRASHED  # non-zero: supervisord restarts us, and the log says it was no clean stop
    finally:
        ctx.destroy(linger=200)
    return 0
