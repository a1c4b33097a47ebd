"""`python -m gateway.openapi OUT.json`: the gateway's OpenAPI schema, written without a server or a broker.

The app is built with default settings (the lifespan, which connects to the broker, never runs), so the file is
the same on every machine; the frontend's TypeScript types are generated from it (`make` runs both).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.app import create_app
from gateway.settings import GatewaySettings


def schema() -> dict:
    # frontend_dir="": the static bundle's router is left out of the schema either way; don't depend on a build.
    return create_app(GatewaySettings(frontend_dir="")).openapi_schema.to_schema()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.openapi", description=__doc__)
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    text = json.dumps(schema(), indent=2, sort_keys=True) + "\n"
    if not args.out.exists() or args.out.read_text() != text:  # unchanged: keep the mtime, so make stops here
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
