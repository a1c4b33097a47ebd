"""An HTTP client of the gateway's SSE endpoint, as a user's program would be.

`python -m gateway.client "TEXT" -o out.wav [--url URL] [--wait S] [--json]` streams one utterance
from `POST /synthesize-stream`, prints each chunk as it arrives, writes the WAV and the metrics. The
bench harness and `make demo` use `stream()` below.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
from typing import Any

import httpx
import msgspec
import numpy as np
import soundfile as sf
from httpx_sse import connect_sse

from engine.audio import SAMPLE_RATE
from engine.cli import add_synthesis_arguments, synthesis_params
from engine.metrics import Metrics


class GatewayError(Exception):
    """An HTTP error before the stream, or an `error` event in it."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class SseChunk(msgspec.Struct, kw_only=True):
    chunk_id: int
    samples: int
    arrived: float  # CLOCK_MONOTONIC at arrival
    metrics: dict[str, Any]  # the server's per-chunk metrics (spans in the same clock on one host)


class SseResult(msgspec.Struct, kw_only=True):
    pcm: np.ndarray  # float32 mono, 24 kHz
    chunks: list[SseChunk]
    started: float  # CLOCK_MONOTONIC when the request was sent
    ended: float

    def tally(self) -> Metrics:
        """The stream as this client saw it, from the request being sent: first audio, audio seconds, RTF."""
        tally = Metrics()
        for c in self.chunks:
            tally.add_audio(c.samples, SAMPLE_RATE, c.arrived - self.started)
        tally.end(self.ended - self.started)
        return tally

    @property
    def first_audio(self) -> float | None:
        """Request sent → first non-empty audio chunk received, client side."""
        return self.tally().first_chunk_latency

    @property
    def audio_seconds(self) -> float:
        return self.tally().audio_seconds


def default_url() -> str:
    port = os.environ.get("CHATTERBOX_GATEWAY_PORT", "6095")
    return os.environ.get("CHATTERBOX_GATEWAY_URL") or f"http://127.0.0.1:{port}"


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def stream(
    url: str,
    fields: dict[str, Any],
    *,
    reference: bytes | None = None,
    api_key: str | None = None,
    timeout: float = 600.0,
    on_chunk=None,
) -> SseResult:
    """One `/synthesize-stream` request; raises GatewayError for a 4xx/5xx or an `error` event."""
    files = {"audio_prompt": ("reference", reference)} if reference else None
    data = {k: str(v) for k, v in fields.items() if v is not None}
    chunks: list[SseChunk] = []
    parts: list[np.ndarray] = []
    with httpx.Client(timeout=timeout, headers=auth_headers(api_key)) as http:
        started = time.monotonic()
        with connect_sse(http, "POST", f"{url}/synthesize-stream", data=data, files=files) as source:
            if source.response.status_code != 200:
                source.response.read()
                raise GatewayError(source.response.status_code, source.response.json())
            for event in source.iter_sse():  # keep-alive comments dispatch no event
                body = json.loads(event.data)
                if event.event == "error":
                    raise GatewayError(200, body)
                if event.event == "done":
                    break
                pcm, _ = sf.read(io.BytesIO(base64.b64decode(body["audio_chunk"])), dtype="float32")
                parts.append(pcm)
                chunk = SseChunk(
                    chunk_id=body["chunk_id"], samples=len(pcm), arrived=time.monotonic(), metrics=body["metrics"]
                )
                chunks.append(chunk)
                if on_chunk is not None:
                    on_chunk(chunk)
            else:
                raise GatewayError(200, {"error": "the stream ended without a done event"})
    pcm = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return SseResult(pcm=pcm, chunks=chunks, started=started, ended=time.monotonic())


def wait_healthy(url: str, timeout: float) -> dict[str, Any]:
    """Poll /health until a slot is live; its body."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(f"{url}/health", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise GatewayError(503, {"error": f"no live slot behind {url} after {timeout:g} s"})
        time.sleep(0.5)


def seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.client", description="Stream one utterance over SSE.")
    add_synthesis_arguments(p)
    p.add_argument("--url", default=default_url(), help="the gateway (default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("CHATTERBOX_API_KEY") or None)
    p.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for a live slot first")
    args = p.parse_args(argv)
    out = sys.stderr if args.json else sys.stdout
    fields = msgspec.structs.asdict(synthesis_params(args)) | {"text": args.text}
    reference = args.voice.read_bytes() if args.voice else None

    def progress(chunk: SseChunk) -> None:
        m = chunk.metrics
        print(
            f"chunk {chunk.chunk_id}: {chunk.samples / SAMPLE_RATE:.2f} s of audio, at {m['total_latency']:.2f} s "
            f"(slot {m['slot']})",
            file=out,
        )

    try:
        if args.wait:
            wait_healthy(args.url, args.wait)
        result = stream(args.url, fields, reference=reference, api_key=args.api_key, on_chunk=progress)
    except (GatewayError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, result.pcm, SAMPLE_RATE, subtype="PCM_16")
    last = result.chunks[-1].metrics
    if last["weights"] == "random":
        print("NOTE: the server runs RANDOM weights; the audio is noise.", file=out)
    tally = result.tally()
    total = tally.total_latency
    summary = {
        "first_chunk_latency": tally.first_chunk_latency,
        "total_latency": total,
        "rtf": tally.rtf,
        "chunks": tally.chunks,
        "audio_seconds": tally.audio_seconds,
        "weights": last["weights"],
        "slot": last["slot"],
        "server_first_chunk_latency": last["first_chunk_latency"],
    }
    print(
        f"wrote {args.output}: {summary['audio_seconds']:.2f} s of audio in {summary['chunks']} chunks over SSE "
        f"from {args.url}; first audio {seconds(tally.first_chunk_latency)} (client side), total {total:.2f} s, "
        f"RTF {summary['rtf'] or 0:.2f}",
        file=out,
    )
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
