"""Where the broker listens and how it judges liveness; shared by the broker, workers and clients."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from engine.settings import settings_from_env

PREFIX = "CHATTERBOX_BROKER_"


class BrokerSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Workers and clients connect to `host`; the broker binds `bind_host` (use * to accept other machines).
    host: str = "127.0.0.1"
    bind_host: str = "127.0.0.1"
    frontend_port: int = 5555  # clients: submit, cancel, ping, stats
    backend_port: int = 5556  # workers: ready, heartbeats, jobs, cancels
    results_out_port: int = 5557  # XPUB: clients subscribe with their own id as topic
    results_in_port: int = 5558  # XSUB: S3Gen workers publish results here
    # Every peer sends something at least this often; a peer silent for interval × liveness is dead.
    heartbeat_interval: float = 0.5
    heartbeat_liveness: int = 4
    # Jobs wait here while every live slot is full; past the bound a submit is refused with `busy`.
    max_queue: int = 64
    # A queued job that finds no slot within this many seconds ends with `timeout`.
    queue_timeout: float = 60.0
    # Dispatches per job: a job whose slot died before any audio went out is tried again up to this.
    max_attempts: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> BrokerSettings:
        return settings_from_env(cls, PREFIX, env, overrides)

    @property
    def expiry(self) -> float:
        return self.heartbeat_interval * self.heartbeat_liveness

    def bind(self, port: int) -> str:
        return f"tcp://{self.bind_host}:{port}"

    def connect(self, port: int) -> str:
        return f"tcp://{self.host}:{port}"
