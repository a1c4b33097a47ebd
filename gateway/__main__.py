"""`python -m gateway`: the HTTP gateway on uvicorn (port 6095 by default)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from gateway.app import create_app
from gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s gateway: %(message)s")
    settings = GatewaySettings.from_env(host=args.host, port=args.port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
