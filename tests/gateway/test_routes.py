"""Route-level tests through Litestar's own TestClient (in-process ASGI, lifespan included).

The app still talks to a real broker process; the slot behind it is scripted (no model here).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from litestar.testing import TestClient

from bench.stack import Proc, broker_env, broker_settings
from broker.settings import BrokerSettings
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.broker.scripted import ScriptedSlot


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    settings = broker_settings(heartbeat_interval=0.2, heartbeat_liveness=10)  # 2 s expiry: none expires here
    proc = Proc(["-m", "broker"], broker_env(settings), tmp_path_factory.mktemp("broker") / "broker.log")
    slot = ScriptedSlot(settings, "s", auto_chunks=2)
    yield settings
    slot.close()
    proc.stop()


def app_client(broker: BrokerSettings, tmp_path, **settings: object) -> TestClient:
    gateway = GatewaySettings(data_dir=str(tmp_path), **settings)  # type: ignore[arg-type]
    return TestClient(create_app(gateway, broker), timeout=30)


def tone(seconds: float = 1.2) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, 0.2 * np.sin(np.arange(int(24000 * seconds)) * 0.05), 24000, format="FLAC")
    return buf.getvalue()


def test_openapi_schema_lists_every_endpoint(broker, tmp_path) -> None:
    with app_client(broker, tmp_path) as client:
        paths = client.get("/schema/openapi.json").json()["paths"]
    for path in ("/synthesize-stream", "/synthesize", "/v1/audio/speech", "/v1/models", "/voices", "/health"):
        assert path in paths, path


@pytest.mark.parametrize("encoding", ["json", "form", "multipart"])
def test_each_body_encoding_reaches_the_job(broker, tmp_path, encoding) -> None:
    fields = {"text": "Encoded.", "exaggeration": "0.7", "cfg_weight": "0.3"}
    with app_client(broker, tmp_path) as client:
        if encoding == "json":
            r = client.post("/synthesize", json={**fields, "exaggeration": 0.7, "cfg_weight": 0.3})
        elif encoding == "form":
            r = client.post("/synthesize", data=fields)
        else:
            r = client.post("/synthesize", data=fields, files={"unused": ("x.txt", b"x", "text/plain")})
    assert r.status_code == 200, r.text
    assert sf.info(io.BytesIO(r.content)).frames == 2 * 2400


def test_wrong_content_type_names_the_header(broker, tmp_path) -> None:
    with app_client(broker, tmp_path) as client:
        r = client.post("/synthesize", content=b"text=hi", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and r.json()["field"] == "content-type"


def test_voices_survive_a_restart(broker, tmp_path) -> None:
    with app_client(broker, tmp_path) as client:
        voice = client.post("/voices", data={"name": "kept"}, files={"file": ("k.flac", tone(), "audio/flac")}).json()
    with app_client(broker, tmp_path) as client:
        assert [v["id"] for v in client.get("/voices").json()] == [voice["id"]]
        assert client.post("/synthesize", json={"text": "Again.", "voice": voice["id"]}).status_code == 200
        bad = client.post("/voices", data={"name": "../etc"}, files={"file": ("k.flac", tone(), "audio/flac")})
        assert bad.status_code == 422 and bad.json()["field"] == "name"


def test_cors_origins_are_honoured(broker, tmp_path) -> None:
    with app_client(broker, tmp_path, cors_origins="https://app.example") as client:
        ok = client.options(
            "/synthesize-stream",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        other = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers


def test_websocket_through_the_test_client(broker, tmp_path) -> None:
    with app_client(broker, tmp_path) as client, client.websocket_connect("/ws/synthesize") as ws:
        ws.send_json({"type": "synthesize", "text": "In process."})
        assert ws.receive_json()["type"] == "accepted"
        for _ in range(2):
            assert ws.receive_json()["type"] == "chunk"
            assert len(ws.receive_bytes()) == 2 * 2400
        assert ws.receive_json()["total_chunks"] == 2
