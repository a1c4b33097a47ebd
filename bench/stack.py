"""The stack as child processes (broker + T3/S3Gen pairs) on free ports: for the bench and the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from broker.settings import BrokerSettings

ROOT = Path(__file__).resolve().parent.parent


def free_ports(n: int, avoid: Iterable[int] = ()) -> list[int]:
    """`n` distinct free ports, none in `avoid`: a port handed out before to a process that has not bound it
    yet (a broker still starting) is free to the kernel too, and a second call could get it again."""
    taken, ports, socks = set(avoid), [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)  # held bound until the end, so the kernel hands out each port once
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in taken:
                taken.add(port)
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def broker_ports(settings: BrokerSettings) -> list[int]:
    return [getattr(settings, name) for name in settings.__struct_fields__ if name.endswith("_port")]


def broker_settings(**overrides: object) -> BrokerSettings:
    front, back, out, inn = free_ports(4)
    return BrokerSettings(
        frontend_port=front, backend_port=back, results_out_port=out, results_in_port=inn, **overrides
    )


def broker_env(settings: BrokerSettings) -> dict[str, str]:
    return {f"CHATTERBOX_BROKER_{name.upper()}": str(getattr(settings, name)) for name in settings.__struct_fields__}


class Proc:
    """A child process with its output in a log file, killed (whole group) when the test ends."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self.env = {**os.environ, **env}
        self.popen: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, *self.args], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # 503 before a slot is live is still an answer
    except OSError:
        return False


class Stack:
    """The broker plus a T3 + S3Gen pair per slot, as real processes on a generated checkpoint."""

    def __init__(
        self,
        workdir: Path,
        checkpoint: str,
        slots: tuple[str, ...] = ("a",),
        *,
        threads: int = 1,
        capacity: int = 1,
        env: dict[str, str] | None = None,
        device: str = "cpu",
        **broker: object,
    ) -> None:
        self.workdir = workdir
        self.device = device
        self.settings = broker_settings(**broker)
        self.env = {
            **broker_env(self.settings),
            "CHATTERBOX_CHECKPOINT": checkpoint,
            "CHATTERBOX_WATERMARK": "false",
            "CHATTERBOX_THREADS": str(threads),  # per process; a slot's two processes share the cores
            "CHATTERBOX_WORKER_CAPACITY": str(capacity),  # explicit: tests rely on theirs
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        self.broker = Proc(["-m", "broker"], self.env, workdir / "broker.log")
        self.gateways: list[Proc] = []
        self.gateway_ports: list[int] = []
        self.health: dict = {}  # the /health body `serve` saw
        self.workers: dict[tuple[str, str], Proc] = {}
        for index, slot in enumerate(slots):
            for role in ("s3gen", "t3"):
                self.workers[slot, role] = self._worker(slot, role, index)

    def _worker(self, slot: str, role: str, index: int = 0) -> Proc:
        # "cuda" means one GPU per slot, in order; "cpu" or "cuda:N" is used as given.
        device = f"cuda:{index}" if self.device == "cuda" else self.device
        args = ["-m", f"engine.workers.{role}", "--slot", slot, "--device", device]
        args += ["--pipe", f"ipc://{self.workdir}/{slot}.pipe"]
        return Proc(args, self.env, self.workdir / f"{slot}_{role}.log")

    def add_gateway(self, env: dict[str, str] | None = None) -> str:
        """Start a gateway (uvicorn) on a free port; its URL once it answers HTTP."""
        (port,) = free_ports(1, avoid=[*broker_ports(self.settings), *self.gateway_ports])
        self.gateway_ports.append(port)
        n = len(self.gateways)
        env = {"CHATTERBOX_GATEWAY_DATA_DIR": str(self.workdir / f"gateway{n}"), **(env or {})}
        proc = Proc(["-m", "gateway", "--port", str(port)], self.env | env, self.workdir / f"gateway{n}.log")
        self.gateways.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), 60, f"gateway at {url}")
        return url

    def serve(self, *gateways: dict[str, str], timeout: float) -> list[str]:
        """Start one gateway per env; their URLs once the first reports a live slot (its /health body
        is kept in `health`)."""
        from gateway.client import wait_healthy

        urls = [self.add_gateway(env) for env in gateways or ({},)]
        self.health = wait_healthy(urls[0], timeout)
        return urls

    def restart(self, slot: str, role: str) -> None:
        self.workers[slot, role].start()

    def stop(self) -> None:
        for proc in [*self.gateways, *self.workers.values(), self.broker]:
            proc.stop()

    def logs(self) -> str:
        procs = [self.broker, *self.workers.values(), *self.gateways]
        return "\n".join(f"--- {p.log.name}\n{p.text()[-2000:]}" for p in procs)
