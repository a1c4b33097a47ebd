"""`WS /ws/synthesize`: several requests per connection, one at a time, each cancellable.

Client → server, text frames of JSON:
    {"type": "synthesize", "text": "...", "voice": "...", "exaggeration": 0.5, ...}   (type may be left out)
    {"type": "cancel"}
Server → client, per request `n` (counted from 1 on the connection):
    {"type": "accepted", "request": n}                  (the broker took the job)
    {"type": "chunk", "request": n, "chunk_id": k, "samples": S, "sample_rate": 24000,
     "format": "pcm_s16le", "metrics": {...}}          followed by one binary frame: S samples of PCM16 LE
    {"type": "done", "request": n, "total_chunks": N, "metrics": {...}}
 or {"type": "error", "request": n, "error": "...", "code": "...", "status": 4xx/5xx, "field": ...}
A request ends with exactly one `done` or `error`; a cancelled one with `error` code `cancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from broker.client import JobError
from broker.protocol import ErrorCode
from engine.errors import InvalidInput
from engine.metrics import Metrics
from gateway import audio
from gateway.jobs import Services, Svc, count_chunk, end_tally, open_job, serving, watch
from gateway.requests import from_message
from gateway.voices import VoiceNotFound

log = logging.getLogger(__name__)


class Session:
    """One connection: the receive loop here, the running request in its own task."""

    def __init__(self, socket: WebSocket, svc: Services) -> None:
        self.socket = socket
        self.svc = svc
        self.requests = 0
        self.running: asyncio.Task | None = None
        self.cancel = asyncio.Event()
        # The request task and the receive loop both send; frames of one chunk must stay together.
        self.sending = asyncio.Lock()

    async def run(self) -> None:
        try:
            while True:
                event = await self.socket.receive()
                if event["type"] == "websocket.disconnect":
                    return
                await self.on_message(event.get("text"))
        except WebSocketDisconnect:
            return
        finally:
            if self.running is not None:
                # Gone mid-request: cancelling the task closes the job's stream, which cancels the job.
                self.running.cancel()
                with contextlib.suppress(BaseException):
                    await self.running

    async def on_message(self, text: str | None) -> None:
        try:
            msg = json.loads(text) if text is not None else None
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self.error(None, "message", "must be a JSON object in a text frame", ErrorCode.INVALID_INPUT)
            return
        kind = msg.pop("type", "synthesize")
        if kind == "cancel":
            # Nothing running (it may have just ended) is not an error: the request already had its end.
            if self.running is not None:
                self.cancel.set()
            return
        if kind != "synthesize":
            await self.error(None, "type", "must be synthesize or cancel", ErrorCode.INVALID_INPUT)
            return
        self.requests += 1
        if self.running is not None:
            reason = "one request at a time per connection: wait for done or send cancel"
            await self.error(self.requests, "type", reason, ErrorCode.CONNECTION_BUSY)
            return
        self.cancel.clear()
        self.running = asyncio.create_task(self.serve(self.requests, msg))
        self.running.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        if self.running is task:
            self.running = None

    async def serve(self, n: int, fields: dict[str, Any]) -> None:
        svc = self.svc
        try:
            chunks = await open_job(svc, from_message(fields, svc.settings.max_text_chars), "ws/synthesize")
        except InvalidInput as exc:
            await self.error(n, exc.field, exc.reason, ErrorCode.INVALID_INPUT)
            return
        except VoiceNotFound as exc:
            await self.error(n, "voice", f"unknown voice {exc.args[0]!r}", ErrorCode.NOT_FOUND)
            return
        except JobError as exc:
            await self.error(n, exc.field, exc.message, exc.code)
            return
        started = time.monotonic()
        await self.send({"type": "accepted", "request": n})
        tally, metrics = Metrics(), None
        try:
            with serving(svc):
                async for chunk in watch(chunks, stop=self.cancel):
                    assert chunk is not None  # no keep-alive interval was asked for
                    metrics = msgspec.to_builtins(count_chunk(svc, tally, chunk, started))
                    header = {"type": "chunk", "request": n, "chunk_id": tally.chunks, "samples": len(chunk.pcm)}
                    header |= {"sample_rate": chunk.sample_rate, "format": "pcm_s16le", "metrics": metrics}
                    await self.send(header, audio.pcm16(chunk.pcm))
        except JobError as exc:
            await self.error(n, exc.field, exc.message, exc.code)
            return
        if self.cancel.is_set():
            await self.error(n, None, "cancelled by the client", ErrorCode.CANCELLED)
            return
        end_tally(svc, tally, started)
        done = {"type": "done", "request": n, "message": "Streaming complete", "total_chunks": tally.chunks}
        await self.send(done | {"metrics": metrics})

    async def error(self, n: int | None, field: str | None, reason: str, code: ErrorCode) -> None:
        body: dict[str, Any] = {"type": "error", "request": n, "error": reason, "code": code, "status": code.status}
        if field:
            body["field"] = field
        await self.send(body)

    async def send(self, message: dict[str, Any], data: bytes | None = None) -> None:
        async with self.sending:
            await self.socket.send_data(json.dumps(message), mode="text")
            if data is not None:
                await self.socket.send_data(data, mode="binary")


@websocket("/ws/synthesize")
async def ws_synthesize(socket: WebSocket, svc: Svc) -> None:
    await socket.accept()
    await Session(socket, svc).run()
