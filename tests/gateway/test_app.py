"""The gateway as a real uvicorn process, talking to a real broker whose slot is scripted.

The model is the one thing faked here (a scripted slot answers each job with 0.1 s tone chunks), so
these tests are about HTTP: formats, errors, limits, auth, voices, cancel on disconnect.
"""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from httpx_sse import connect_sse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from bench.stack import Proc, broker_env, broker_ports, broker_settings, free_ports, wait_for
from broker.protocol import Cancel
from broker.settings import BrokerSettings
from tests.broker.scripted import ScriptedSlot

API_KEY = "test-key"


@pytest.fixture(scope="module")
def settings() -> BrokerSettings:
    return broker_settings(heartbeat_interval=0.2, heartbeat_liveness=10, max_queue=1)  # expiry 2 s


@pytest.fixture(scope="module")
def stack(settings: BrokerSettings, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("gateway")
    broker = Proc(["-m", "broker"], broker_env(settings), tmp / "broker.log")
    slot = ScriptedSlot(settings, "s", auto_chunks=3)
    port, auth_port = free_ports(2, avoid=broker_ports(settings))
    env = broker_env(settings) | {
        "CHATTERBOX_GATEWAY_PORT": str(port),
        "CHATTERBOX_GATEWAY_DATA_DIR": str(tmp / "data"),
        "CHATTERBOX_GATEWAY_KEEPALIVE_SECONDS": "0.2",
        "CHATTERBOX_GATEWAY_MAX_BODY_BYTES": str(2 * 1024 * 1024),
    }
    gateways = {
        "open": Proc(["-m", "gateway"], env, tmp / "gateway.log"),
        "auth": Proc(
            ["-m", "gateway", "--port", str(auth_port)], env | {"CHATTERBOX_API_KEY": API_KEY}, tmp / "g2.log"
        ),
    }
    urls = {"open": f"http://127.0.0.1:{port}"}
    urls["auth"] = f"http://127.0.0.1:{gateways['auth'].args[-1]}"
    for url in urls.values():
        wait_for(lambda u=url: _up(u), 60, f"gateway at {url}")
    yield {"url": urls["open"], "auth_url": urls["auth"], "slot": slot}
    for g in gateways.values():
        g.stop()
    slot.close()
    broker.stop()
    print((tmp / "gateway.log").read_text()[-3000:])


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def voice_file(seconds: float = 1.5) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(24000 * seconds)) / 24000
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 220 * t), 24000, format="WAV")
    return buf.getvalue()


def test_sse_stream_in_the_seeds_format(stack) -> None:
    with (
        httpx.Client(timeout=30) as http,
        connect_sse(
            http, "POST", f"{stack['url']}/synthesize-stream", data={"text": "Hello there.", "chunk_size": "25"}
        ) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = list(source.iter_sse())  # keep-alives (every 0.2 s here) are comments: no events
    kinds = [e.event for e in events]
    assert kinds == ["audio_chunk"] * 3 + ["done"]
    ids = [e.id for e in events]
    assert ids == ["1", "2", "3", "4"]
    first = json.loads(events[0].data)
    assert first["chunk_id"] == 1 and first["sample_rate"] == 24000
    wav, sr = sf.read(io.BytesIO(base64.b64decode(first["audio_chunk"])), dtype="int16")
    assert sr == 24000 and len(wav) == 2400  # a complete 16-bit WAV per chunk
    metrics = json.loads(events[2].data)["metrics"]
    assert set(metrics) >= {"first_chunk_latency", "total_latency", "rtf", "total_audio_duration", "chunks_generated"}
    assert metrics["chunks_generated"] == 3 and metrics["weights"] == "random"
    assert json.loads(events[-1].data) == {"message": "Streaming complete", "total_chunks": 3}


def test_json_body_and_regular_synthesis(stack) -> None:
    r = httpx.post(f"{stack['url']}/synthesize", json={"text": "Whole.", "temperature": 0.7}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(r.content))
    assert sr == 24000 and len(wav) == 3 * 2400
    job = stack["slot"].answered[-1]
    assert job.params.temperature == 0.7 and job.stream is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({}, "text"),
        ({"text": "x" * 3001}, "text"),
        ({"text": "hi", "temperature": 9}, "temperature"),
        ({"text": "hi", "chunk_size": 5}, "chunk_size"),
        ({"text": "hi", "exaggeration": "loud"}, "exaggeration"),
        ({"text": "hi", "cfg_weight": -1}, "cfg_weight"),
    ],
)
def test_bad_input_is_422_naming_the_field(stack, body, field) -> None:
    r = httpx.post(f"{stack['url']}/synthesize-stream", json=body, timeout=10)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_bad_audio_prompt_and_unknown_voice(stack) -> None:
    files = {"audio_prompt": ("x.wav", b"not audio", "audio/wav")}
    r = httpx.post(f"{stack['url']}/synthesize-stream", data={"text": "hi"}, files=files, timeout=10)
    assert r.status_code == 422 and r.json()["field"] == "audio_prompt"
    r = httpx.post(f"{stack['url']}/synthesize", json={"text": "hi", "voice": "nobody"}, timeout=10)
    assert r.status_code == 404 and r.json()["field"] == "voice"


def test_oversized_body_is_refused(stack) -> None:
    files = {"audio_prompt": ("big.wav", b"\0" * (3 * 1024 * 1024), "audio/wav")}
    r = httpx.post(f"{stack['url']}/synthesize-stream", data={"text": "hi"}, files=files, timeout=10)
    assert r.status_code == 413


def test_voice_upload_use_list_delete(stack) -> None:
    url = stack["url"]
    r = httpx.post(f"{url}/voices", data={"name": "tone"}, files={"file": ("t.wav", voice_file(), "audio/wav")})
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["name"] == "tone" and voice["seconds"] == pytest.approx(1.5)
    assert [v["name"] for v in httpx.get(f"{url}/voices").json()] == ["tone"]
    r = httpx.post(f"{url}/synthesize", json={"text": "In that voice.", "voice": "tone"}, timeout=30)
    assert r.status_code == 200
    assert stack["slot"].answered[-1].has_reference
    short = httpx.post(f"{url}/voices", data={"name": "short"}, files={"file": ("s.wav", voice_file(0.3), "audio/wav")})
    assert short.status_code == 422 and short.json()["field"] == "audio_prompt"
    assert httpx.delete(f"{url}/voices/{voice['id']}").status_code == 200
    assert httpx.get(f"{url}/voices").json() == []
    assert httpx.delete(f"{url}/voices/{voice['id']}").status_code == 404


def test_openai_sdk_streams_wav_and_pcm(stack) -> None:
    client = openai.OpenAI(base_url=f"{stack['url']}/v1", api_key="unused")
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello from the SDK.", response_format="pcm"
    ) as response:
        pcm = b"".join(response.iter_bytes())
    assert len(pcm) == 3 * 2400 * 2
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello from the SDK.", response_format="wav"
    ) as response:
        wav = b"".join(response.iter_bytes())
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 3 * 2400 * 2
    mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.", response_format="mp3")
    decoded, sr = sf.read(io.BytesIO(mp3.content))
    assert sr == 24000 and len(decoded) > 2400
    with pytest.raises(openai.UnprocessableEntityError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=1.5)
    assert "tts-1" in [m.id for m in client.models.list()]


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_openai_instructions_are_taken_and_said_to_be_ignored(stack, stream_format) -> None:
    client = openai.OpenAI(base_url=f"{stack['url']}/v1", api_key="unused")
    kwargs = dict(model="gpt-4o-mini-tts", voice="alloy", input="Hi.", response_format="pcm")
    with client.audio.speech.with_streaming_response.create(
        **kwargs, instructions="Speak like a pirate.", extra_body={"stream_format": stream_format}
    ) as response:
        assert response.headers["x-chatterbox-ignored"] == "instructions"
        assert len(b"".join(response.iter_bytes())) > 0
    with client.audio.speech.with_streaming_response.create(**kwargs) as response:
        assert "x-chatterbox-ignored" not in response.headers
        response.read()


@pytest.mark.parametrize("model", ["tts-1-1106", "tts-1-hd-1106", "gpt-4o-mini-tts-2025-12-15"])
def test_openai_dated_model_names_are_aliases(stack, model) -> None:
    client = openai.OpenAI(base_url=f"{stack['url']}/v1", api_key="unused")
    pcm = client.audio.speech.create(model=model, voice="alloy", input="Pinned.", response_format="pcm").content
    assert len(pcm) == 3 * 2400 * 2


@pytest.mark.parametrize("model", ["tts-2", "tts-1-x", "gpt-4o-mini-tts-25"])
def test_an_unknown_model_is_a_422_listing_the_names(stack, model) -> None:
    body = {"model": model, "input": "Hi.", "response_format": "pcm"}
    r = httpx.post(f"{stack['url']}/v1/audio/speech", json=body, timeout=10)
    assert r.status_code == 422 and r.json()["field"] == "model"
    assert r.json()["reason"].startswith("must be one of chatterbox, tts-1, tts-1-hd, gpt-4o-mini-tts")
    assert "regex" not in r.json()["reason"]


def test_openai_sse_events(stack) -> None:
    body = {"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "pcm", "stream_format": "sse"}
    with httpx.Client(timeout=30) as http, connect_sse(http, "POST", f"{stack['url']}/v1/audio/speech", json=body) as s:
        events = [json.loads(e.data) for e in s.iter_sse()]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 3 + ["speech.audio.done"]
    assert len(base64.b64decode(events[0]["audio"])) == 2400 * 2


def test_disconnect_cancels_the_job(stack) -> None:
    slot: ScriptedSlot = stack["slot"]
    with (
        httpx.Client(timeout=30) as http,
        connect_sse(http, "POST", f"{stack['url']}/synthesize-stream", json={"text": "hold this one"}) as source,
    ):
        job = slot.next_job()
        slot.audio(job, 1)
        events = source.iter_sse()
        assert next(events).event == "audio_chunk"
    # The client went away mid-stream: the worker is told to stop.
    cancel = wait_for(
        lambda: next((m for m in list(slot.inbox.queue) if isinstance(m, Cancel) and m.job == job.job), None),
        10,
        "cancel",
    )
    assert cancel


def test_busy_is_503_with_retry_after_and_keepalive_while_queued(stack) -> None:
    slot: ScriptedSlot = stack["slot"]
    url = stack["url"]
    with (
        httpx.Client(timeout=30) as http,
        connect_sse(http, "POST", f"{url}/synthesize-stream", json={"text": "hold A"}) as a,
    ):
        job_a = slot.next_job()
        with connect_sse(http, "POST", f"{url}/synthesize-stream", json={"text": "hold B"}) as b:
            # A holds the slot, B waits in the queue (max_queue 1): a third is refused.
            r = httpx.post(f"{url}/synthesize-stream", json={"text": "hold C"}, timeout=10)
            assert r.status_code == 503 and r.headers["retry-after"]
            lines = b.response.iter_lines()
            # While B waits: keep-alives, each a comment line alone, then a blank line (no `data:`).
            assert [next(lines), next(lines), next(lines), next(lines)] == [": keep-alive", "", ": keep-alive", ""]
            slot.finish(job_a, 1)
            job_b = slot.next_job()
            slot.finish(job_b, 1)
            rest = list(lines)
            assert [line for line in rest if line.startswith("event:")] == ["event: audio_chunk", "event: done"]
        assert [e.event for e in a.iter_sse()] == ["audio_chunk", "done"]  # keep-alives dispatch nothing


def test_auth_on_and_off(stack) -> None:
    url = stack["auth_url"]
    assert httpx.get(f"{url}/health").status_code == 200  # always open
    assert httpx.get(f"{url}/stats").status_code == 401
    assert httpx.get(f"{url}/stats", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert httpx.get(f"{url}/stats", headers={"X-API-Key": API_KEY}).status_code == 200
    assert httpx.get(f"{url}/stats", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"{stack['url']}/stats").status_code == 200  # no key configured: open


def test_health_stats_metrics(stack) -> None:
    health = httpx.get(f"{stack['url']}/health").json()
    assert health["streaming"] is True and health["weights"] == "random" and health["live_slots"] == 1
    stats = httpx.get(f"{stack['url']}/stats").json()
    assert stats["slots"][0]["name"] == "s" and stats["completed"] >= 1
    text = httpx.get(f"{stack['url']}/metrics").text
    assert "chatterbox_requests_total" in text and "chatterbox_first_chunk_latency_seconds_bucket" in text


def ws_url(url: str, query: str = "") -> str:
    return url.replace("http://", "ws://") + "/ws/synthesize" + query


def ws_messages(ws, until: tuple[str, ...] = ("done", "error")) -> list:
    """JSON messages as dicts and audio frames as bytes, up to and including the request's end."""
    out: list = []
    while True:
        frame = ws.recv(timeout=30)
        out.append(frame if isinstance(frame, bytes) else json.loads(frame))
        if isinstance(out[-1], dict) and out[-1]["type"] in until:
            return out


def test_websocket_serves_requests_in_turn_on_one_connection(stack) -> None:
    with ws_connect(ws_url(stack["url"])) as ws:
        for n in (1, 2):
            ws.send(json.dumps({"type": "synthesize", "text": f"Request {n}.", "chunk_size": 20}))
            msgs = ws_messages(ws)
            kinds = [m["type"] if isinstance(m, dict) else "audio" for m in msgs]
            assert kinds == ["accepted"] + ["chunk", "audio"] * 3 + ["done"]
            assert all(m["request"] == n for m in msgs if isinstance(m, dict))
            header, pcm = msgs[1], msgs[2]
            assert header["format"] == "pcm_s16le" and header["sample_rate"] == 24000
            assert len(pcm) == 2 * header["samples"] == 2 * 2400
            assert msgs[-1]["total_chunks"] == 3 and msgs[-1]["metrics"]["chunks_generated"] == 3
        assert stack["slot"].answered[-1].params.chunk_size == 20


def test_websocket_cancel_stops_the_job_and_the_connection_goes_on(stack) -> None:
    slot: ScriptedSlot = stack["slot"]
    with ws_connect(ws_url(stack["url"])) as ws:
        ws.send(json.dumps({"text": "hold me"}))  # type defaults to synthesize
        job = slot.next_job()
        slot.audio(job, 1)
        assert json.loads(ws.recv(timeout=10))["type"] == "accepted"
        assert json.loads(ws.recv(timeout=10))["type"] == "chunk"
        assert isinstance(ws.recv(timeout=10), bytes)
        # A second request while the first runs is refused on its own; the first goes on.
        ws.send(json.dumps({"text": "too soon"}))
        busy = json.loads(ws.recv(timeout=10))
        assert busy["type"] == "error" and busy["code"] == "connection_busy" and busy["request"] == 2
        ws.send(json.dumps({"type": "cancel"}))
        end = json.loads(ws.recv(timeout=10))
        assert end == {"type": "error", "request": 1, "error": "cancelled by the client", "code": "cancelled",
                       "status": 499}  # fmt: skip
        wait_for(lambda: any(isinstance(m, Cancel) and m.job == job.job for m in list(slot.inbox.queue)), 10, "cancel")
        ws.send(json.dumps({"text": "After the cancel."}))
        assert ws_messages(ws)[-1]["type"] == "done"


@pytest.mark.parametrize(
    ("frame", "field", "status"),
    [
        ("not json", "message", 422),
        ('["a list"]', "message", 422),
        ('{"type": "sing"}', "type", 422),
        ('{"text": ""}', "text", 422),
        ('{"text": "hi", "temperature": 9}', "temperature", 422),
        ('{"text": "hi", "voice": "nobody"}', "voice", 404),
    ],
)
def test_websocket_bad_input_gets_an_error_naming_the_field(stack, frame, field, status) -> None:
    with ws_connect(ws_url(stack["url"])) as ws:
        ws.send(frame)
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["field"] == field and error["status"] == status, error
        ws.send(json.dumps({"text": "Still usable."}))
        assert ws_messages(ws)[-1]["type"] == "done"


def test_websocket_auth(stack) -> None:
    with pytest.raises(InvalidStatus), ws_connect(ws_url(stack["auth_url"])):
        pass
    with ws_connect(ws_url(stack["auth_url"], f"?api_key={API_KEY}")) as ws:
        ws.send(json.dumps({"text": "Allowed."}))
        assert ws_messages(ws)[-1]["type"] == "done"
    with ws_connect(ws_url(stack["auth_url"]), additional_headers={"X-API-Key": API_KEY}) as ws:
        ws.send(json.dumps({"text": "Allowed."}))
        assert ws_messages(ws)[-1]["type"] == "done"


def test_a_job_failing_mid_stream_ends_with_one_error_event(stack) -> None:
    slot: ScriptedSlot = stack["slot"]
    with (
        httpx.Client(timeout=30) as http,
        connect_sse(http, "POST", f"{stack['url']}/synthesize-stream", json={"text": "hold, then break"}) as source,
    ):
        job = slot.next_job()
        slot.audio(job, 1)
        slot.audio(job, 3)  # chunk 2 never comes: the client sees a gap and gives the job up
        events = list(source.iter_sse())  # ends: the server closed the stream
    assert [e.event for e in events] == ["audio_chunk", "error"]
    assert json.loads(events[-1].data)["code"] == "gap" and events[-1].id == "2"
