"""`python -m broker`: run the broker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal

from broker.server import Broker
from broker.settings import BrokerSettings
from broker.sockets import closing_context


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m broker", description=__doc__)
    p.add_argument("--bind-host", help="interface to bind (default 127.0.0.1; * for all)")
    p.add_argument("--frontend-port", type=int)
    p.add_argument("--backend-port", type=int)
    p.add_argument("--results-out-port", type=int)
    p.add_argument("--results-in-port", type=int)
    p.add_argument("--max-queue", type=int)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s broker: %(message)s")
    settings = BrokerSettings.from_env(**{k: v for k, v in vars(args).items()})
    with closing_context() as ctx:
        broker = Broker(settings, ctx)

        def stop(signum: int, frame: object) -> None:
            broker.running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        broker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
