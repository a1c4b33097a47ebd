"""The gateway over the real stack: broker + one T3/S3Gen slot on the generated checkpoint + two gateways
(one open, one with an API key), driven by real HTTP, SSE, WebSocket and OpenAI SDK clients.

The slot has capacity 1 and the broker queues at most one job, so "busy" is reachable. Audio is noise
(random weights); what is checked is the contract, the accounting and the cancellation.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from httpx_sse import connect_sse
from websockets.sync.client import connect as ws_connect

from bench.stack import Stack, wait_for

LOAD_TIMEOUT = 240
API_KEY = "e2e-key"
SHORT = {"max_new_tokens": 24, "first_chunk_size": 6, "chunk_size": 10}
LONG = {"max_new_tokens": 600, "first_chunk_size": 8, "chunk_size": 16, "ignore_stop": True}  # must outlast a cancel


@pytest.fixture(scope="module")
def stack(checkpoint_dir, tmp_path_factory: pytest.TempPathFactory):
    s = Stack(tmp_path_factory.mktemp("gateway-stack"), str(checkpoint_dir), ("g",), max_queue=1)
    try:
        open_url, auth_url = s.serve({}, {"CHATTERBOX_API_KEY": API_KEY}, timeout=LOAD_TIMEOUT)
        yield s, {"open": open_url, "auth": auth_url}
    finally:
        s.stop()
        print(s.logs())


@pytest.fixture(scope="module")
def url(stack) -> str:
    return stack[1]["open"]


def sse(url: str, fields: dict, headers: dict | None = None) -> list[tuple[object, float]]:
    """Every SSE event of one /synthesize-stream call, with its arrival time (CLOCK_MONOTONIC); keep-alive
    comments dispatch none."""
    with (
        httpx.Client(timeout=300, headers=headers) as http,
        connect_sse(http, "POST", f"{url}/synthesize-stream", data=fields) as source,
    ):
        return [(event, time.monotonic()) for event in source.iter_sse()]


def pcm_of(events: list) -> np.ndarray:
    parts = []
    for event, _ in events:
        if event.event == "audio_chunk":
            wav, sr = sf.read(io.BytesIO(base64.b64decode(json.loads(event.data)["audio_chunk"])), dtype="float32")
            assert sr == 24000
            parts.append(wav)
    return np.concatenate(parts)


def wait_slot_free(url: str) -> None:
    wait_for(lambda: httpx.get(f"{url}/stats").json()["slots"][0]["in_flight"] == 0, 60, "the slot to free", 0.2)


def t3_stopped(stack: Stack, job: str) -> float:
    log = stack.workers["g", "t3"]
    match = wait_for(lambda: re.search(rf"job {job} stopped ([\d.]+) s after its cancel", log.text()), 30, "T3 stop")
    return float(match.group(1))


def test_sse_streams_real_audio_in_the_seeds_format(url) -> None:
    events = sse(url, {"text": "The gateway streams this sentence.", "seed": 7, **SHORT})
    kinds = [e.event for e, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"audio_chunk"} and len(kinds) >= 3
    assert [e.id for e, _ in events] == [str(i) for i in range(1, len(events) + 1)]
    chunks = [json.loads(e.data) for e, _ in events[:-1]]
    assert [c["chunk_id"] for c in chunks] == list(range(1, len(chunks) + 1))
    last = chunks[-1]["metrics"]
    assert last["weights"] == "random" and last["slot"] == "g" and last["chunks_generated"] == len(chunks)
    assert 0 < last["first_chunk_latency"] <= last["total_latency"]
    pcm = pcm_of(events)
    assert len(pcm) == round(last["total_audio_duration"] * 24000)
    assert len(pcm) % 960 == 0  # whole speech tokens, none lost at the end
    assert json.loads(events[-1][0].data) == {"message": "Streaming complete", "total_chunks": len(chunks)}
    # Each chunk reached the client after the vocoder finished it (same host, same monotonic clock).
    transit = [t - json.loads(e.data)["metrics"]["s3gen_span"][1] for e, t in events[:-1]]
    print("vocoder → SSE client per chunk, ms:", [round(1000 * x, 1) for x in transit])
    assert all(x > 0 for x in transit)


def test_regular_synthesis_gives_the_streamed_tokens_as_one_wav(url) -> None:
    fields = {"text": "Same seed, same tokens.", "seed": 11, **SHORT}
    streamed = pcm_of(sse(url, fields))
    r = httpx.post(f"{url}/synthesize", data=fields, timeout=300)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == 24000 and len(wav) == len(streamed) > 0


def test_openai_sdk_streams_wav_and_pcm(url) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=300)
    extra = {"seed": 5, **SHORT}
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello from the SDK.", response_format="pcm", extra_body=extra
    ) as response:
        pieces = list(response.iter_bytes())
    pcm = b"".join(pieces)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello from the SDK.", response_format="wav", extra_body=extra
    ) as response:
        wav = b"".join(response.iter_bytes())
    assert len(pcm) > 0 and len(pcm) % (960 * 2) == 0
    assert wav[:4] == b"RIFF" and wav[44:] == pcm  # same seed: the same samples, behind a streaming header


def test_voice_uploaded_then_used(url) -> None:
    t = np.arange(int(24000 * 2.0)) / 24000
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2, 24000, format="WAV")
    r = httpx.post(f"{url}/voices", data={"name": "hum"}, files={"file": ("hum.wav", buf.getvalue(), "audio/wav")})
    assert r.status_code == 201, r.text
    voice = r.json()
    fields = {"text": "Now in the uploaded voice.", "seed": 3, **SHORT, "max_new_tokens": 8}
    default = pcm_of(sse(url, fields))
    cloned = pcm_of(sse(url, fields | {"voice": "hum"}))
    by_id = pcm_of(sse(url, fields | {"voice": voice["id"]}))
    # The reference reached the workers: other conditionals, other audio; by name or id, the same.
    assert not np.array_equal(default[: len(cloned)], cloned[: len(default)])
    assert np.array_equal(cloned, by_id)


def test_websocket_cancel_stops_t3_and_the_connection_serves_the_next_request(url, stack) -> None:
    with ws_connect(url.replace("http", "ws") + "/ws/synthesize") as ws:
        ws.send(json.dumps({"text": "This request is cancelled after its first chunk.", **LONG}))
        assert json.loads(ws.recv(timeout=60))["type"] == "accepted"
        header = json.loads(ws.recv(timeout=120))
        assert header["type"] == "chunk" and len(ws.recv(timeout=10)) == 2 * header["samples"]
        ws.send(json.dumps({"type": "cancel"}))
        while True:  # chunks already on the wire may precede the end
            frame = ws.recv(timeout=30)
            if isinstance(frame, str) and json.loads(frame)["type"] in ("done", "error"):
                break
        assert json.loads(frame)["code"] == "cancelled"
        stopped = t3_stopped(stack[0], header["metrics"]["job"])
        print(f"WebSocket cancel: T3 stopped {stopped:.3f} s after the cancel reached it")
        wait_slot_free(url)
        ws.send(json.dumps({"text": "And then a short one.", **SHORT}))
        kinds = []
        while not kinds or kinds[-1] not in ("done", "error"):
            frame = ws.recv(timeout=120)
            kinds.append("audio" if isinstance(frame, bytes) else json.loads(frame)["type"])
        assert kinds[0] == "accepted" and kinds[-1] == "done" and kinds.count("audio") == kinds.count("chunk") > 0


def test_client_disconnect_cancels_the_job(url, stack) -> None:
    with (
        httpx.Client(timeout=300) as http,
        connect_sse(http, "POST", f"{url}/synthesize-stream", data={"text": "Nobody listens.", **LONG}) as source,
    ):
        first = next(e for e in source.iter_sse() if e.event == "audio_chunk")
    job = json.loads(first.data)["metrics"]["job"]
    print(f"SSE disconnect: T3 stopped {t3_stopped(stack[0], job):.3f} s after the cancel reached it")
    wait_slot_free(url)


JUNK = {"files": {"audio_prompt": ("a.wav", b"junk")}}
BAD_INPUTS = [
    ("/synthesize-stream", {"json": {"text": ""}}, 422, "text"),
    ("/synthesize-stream", {"json": {"text": "x" * 3001}}, 422, "text"),
    ("/synthesize-stream", {"data": {"text": "hi", "temperature": "9"}}, 422, "temperature"),
    ("/synthesize-stream", {"data": {"text": "hi", "chunk_size": "300"}}, 422, "chunk_size"),
    ("/synthesize-stream", {"data": {"text": "hi", "exaggeration": "loud"}}, 422, "exaggeration"),
    ("/synthesize-stream", {"data": {"text": "hi"}, **JUNK}, 422, "audio_prompt"),
    ("/synthesize-stream", {"json": {"text": "hi", "voice": "nobody"}}, 404, "voice"),
    ("/synthesize-stream", {"content": b"text=hi", "headers": {"content-type": "text/plain"}}, 422, "content-type"),
    ("/synthesize", {"json": {"text": "hi", "cfg_weight": 2}}, 422, "cfg_weight"),
    ("/synthesize", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "body"),
    ("/v1/audio/speech", {"json": {"model": "tts-1", "voice": "alloy"}}, 422, "input"),
    ("/v1/audio/speech", {"json": {"model": "nope", "input": "hi"}}, 422, "model"),
    ("/v1/audio/speech", {"json": {"model": "tts-1", "input": "hi", "speed": 2}}, 422, "speed"),
    ("/v1/audio/speech", {"json": {"model": "tts-1", "input": "hi", "response_format": "aac"}}, 422, "response_format"),
    ("/v1/audio/speech", {"json": {"model": "tts-1", "input": "hi", "seed": -1}}, 422, "seed"),
    ("/voices", {"data": {"name": "x"}}, 422, "file"),
    ("/voices", {"data": {"name": "x"}, "files": {"file": ("x.wav", b"junk")}}, 422, "audio_prompt"),
]


@pytest.mark.parametrize(("path", "request_kwargs", "status", "field"), BAD_INPUTS)
def test_bad_input_gets_its_4xx_naming_the_field(url, path, request_kwargs, status, field) -> None:
    r = httpx.post(f"{url}{path}", timeout=30, **request_kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field and body["error"], body


def test_oversized_upload_is_refused_with_413(url) -> None:
    files = {"audio_prompt": ("big.wav", b"\0" * (30 * 1024 * 1024))}
    assert httpx.post(f"{url}/synthesize-stream", data={"text": "hi"}, files=files, timeout=60).status_code == 413


def test_auth_on_and_off(stack, url) -> None:
    secured = stack[1]["auth"]
    assert httpx.get(f"{secured}/health").status_code == 200
    assert httpx.post(f"{secured}/synthesize-stream", data={"text": "hi"}).status_code == 401
    events = sse(secured, {"text": "With the key.", **SHORT}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert events[-1][0].event == "done"
    assert httpx.get(f"{url}/stats").status_code == 200  # the open gateway needs no key


def test_busy_is_503_with_retry_after(url) -> None:
    wait_slot_free(url)
    with httpx.Client(timeout=300) as http:
        with connect_sse(http, "POST", f"{url}/synthesize-stream", data={"text": "Holds the slot.", **LONG}) as a:
            assert a.response.status_code == 200
            with connect_sse(http, "POST", f"{url}/synthesize-stream", data={"text": "Waits.", **LONG}) as b:
                assert b.response.status_code == 200
                stats = httpx.get(f"{url}/stats").json()
                assert stats["queue_depth"] == 1, stats
                r = httpx.post(f"{url}/synthesize-stream", data={"text": "Refused.", **SHORT}, timeout=30)
                assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
                assert r.json()["code"] == "busy"
    # Both clients left: both jobs are cancelled, the queued one before it ever ran.
    wait_slot_free(url)
    wait_for(lambda: httpx.get(f"{url}/stats").json()["queue_depth"] == 0, 30, "an empty queue")


def test_health_and_metrics_after_real_jobs(url) -> None:
    health = httpx.get(f"{url}/health").json()
    assert health == {"status": "ok", "live_slots": 1, "slots": ["g"], "weights": "random", "streaming": True}
    text = httpx.get(f"{url}/metrics").text
    samples = re.findall(r"^chatterbox_first_chunk_latency_seconds_count (\S+)$", text, re.M)
    assert samples and float(samples[0]) >= 5
    assert re.search(r'^chatterbox_errors_total\{code="busy"\} 1\.0$', text, re.M)
