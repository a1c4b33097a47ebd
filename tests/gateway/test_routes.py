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
    SLOTS[settings.frontend_port] = slot
    yield settings
    slot.close()
    proc.stop()


SLOTS: dict[int, ScriptedSlot] = {}  # the module's scripted slot, by its broker's frontend port


def slot_jobs(broker: BrokerSettings) -> list:
    return SLOTS[broker.frontend_port].answered


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


ERROR_KEYS = {"error", "code", "field", "reason"}


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({}, "text", "is required"),
        ({"text": "hi", "ignore_stop": "maybe"}, "ignore_stop", "must be one of true, 1, false, 0"),
        ({"text": "hi", "temperature": "warm"}, "temperature", "Expected `float`, got `str`"),
        ({"text": "hi", "temperature": "9"}, "temperature", "must be between 0.05 and 5"),
    ],
)
def test_form_refusals_name_the_field(broker, tmp_path, fields, field, reason) -> None:
    with app_client(broker, tmp_path) as client:
        r = client.post("/synthesize", data=fields)
    body = r.json()
    assert r.status_code == 422 and set(body) == ERROR_KEYS, body
    assert body["code"] == "invalid_input" and body["field"] == field and reason in body["reason"], body


@pytest.mark.parametrize(("value", "expected"), [("TRUE", True), ("1", True), ("false", False), ("0", False)])
def test_form_booleans_are_true_false_1_0_in_any_case(broker, tmp_path, value, expected) -> None:
    with app_client(broker, tmp_path) as client:
        assert client.post("/synthesize", data={"text": "Flag.", "ignore_stop": value}).status_code == 200
    # The scripted slot recorded the job as the broker got it.
    assert slot_jobs(broker)[-1].params.ignore_stop is expected


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({}, "text", "is required"),
        ({"text": "hi", "ignore_stop": 0}, "ignore_stop", "Expected `bool`, got `int`"),  # JSON is typed strictly
        ({"text": "hi", "temperature": "0.7"}, "temperature", "Expected `float`, got `str`"),
        ({"text": "hi", "audio_prompt": "aGk="}, "audio_prompt", "must be an uploaded file"),
        ({"text": "x" * 3001}, "text", "the maximum is 3000"),
    ],
)
def test_json_refusals_name_the_field(broker, tmp_path, body, field, reason) -> None:
    with app_client(broker, tmp_path) as client:
        r = client.post("/synthesize", json=body)
    assert r.status_code == 422 and r.json()["field"] == field and reason in r.json()["reason"], r.json()


def test_openai_literals_are_checked_naming_the_field(broker, tmp_path) -> None:
    body = {"model": "tts-1", "input": "Hi.", "response_format": "ogg"}
    with app_client(broker, tmp_path) as client:
        r = client.post("/v1/audio/speech", json=body)
        missing = client.post("/v1/audio/speech", json={"input": "Hi."})
    assert r.status_code == 422 and r.json()["field"] == "response_format", r.json()
    assert r.json()["reason"] == "must be one of flac, mp3, opus, pcm, wav"
    gone = missing.json()
    assert missing.status_code == 422 and (gone["field"], gone["reason"]) == ("model", "is required")


def test_an_undecodable_upload_says_so_without_a_python_repr(broker, tmp_path) -> None:
    with app_client(broker, tmp_path) as client:
        files = {"audio_prompt": ("x.wav", b"not audio", "audio/wav")}
        r = client.post("/synthesize", data={"text": "hi"}, files=files)
    body = r.json()
    assert r.status_code == 422 and body["field"] == "audio_prompt", body
    assert body["reason"].startswith("could not be decoded as wav, flac, ogg or mp3")
    assert "<" not in body["error"] and "0x" not in body["error"], body


def test_every_refusal_has_the_one_error_shape(broker, tmp_path) -> None:
    with app_client(broker, tmp_path, api_key="k", max_body_bytes=1000) as client:
        unauthorized = client.get("/stats")
        too_large = client.post("/synthesize", headers={"X-API-Key": "k"}, json={"text": "x" * 2000})
        no_route = client.get("/nowhere", headers={"X-API-Key": "k"})
        unknown_voice = client.delete("/voices/nobody", headers={"X-API-Key": "k"})
    for r, status, code in [
        (unauthorized, 401, "unauthorized"),
        (too_large, 413, "payload_too_large"),
        (no_route, 404, "not_found"),
        (unknown_voice, 404, "not_found"),
    ]:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["code"] == code and isinstance(body["error"], str) and set(body) <= ERROR_KEYS, body
    assert unauthorized.json()["field"] == "authorization" and too_large.json()["field"] == "body"


def test_schema_declares_bodies_responses_and_errors(broker, tmp_path) -> None:
    with app_client(broker, tmp_path, max_text_chars=500) as client:
        schema = client.get("/schema/openapi.json").json()
    stream = schema["paths"]["/synthesize-stream"]["post"]
    content = stream["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-www-form-urlencoded", "multipart/form-data"}
    components = schema["components"]["schemas"]
    multipart = components[content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert multipart["properties"]["audio_prompt"] == {"type": "string", "format": "binary"}
    assert "audio_prompt" not in components["SynthesizeBody"]["properties"]  # JSON cannot carry a file
    assert components["SynthesizeBody"]["properties"]["text"]["maxLength"] == 500  # the server's setting
    assert components["SynthesizeBody"]["properties"]["temperature"]["maximum"] == 5.0  # the engine's range
    assert {"401", "404", "413", "422", "503"} <= set(stream["responses"])
    assert stream["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    speech = schema["paths"]["/v1/audio/speech"]["post"]
    formats = components["SpeechBody"]["properties"]["response_format"]["enum"]
    assert sorted(formats) == ["flac", "mp3", "opus", "pcm", "wav"]
    assert {"audio/mpeg", "audio/pcm", "text/event-stream"} <= set(speech["responses"]["200"]["content"])
    assert list(schema["paths"]["/voices"]["post"]["requestBody"]["content"]) == ["multipart/form-data"]
    assert schema["paths"]["/health"]["get"]["responses"]["503"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("/Health")
    for name in ("AudioChunkEvent", "DoneEvent", "ChunkMetrics", "SpeechDelta", "ModelList", "Stats", "Voice"):
        assert name in components, name


def test_param_fields_are_the_engines() -> None:
    from engine.params import SynthesisParams
    from gateway.requests import ParamFields

    assert set(ParamFields.__struct_fields__) == set(SynthesisParams.__struct_fields__)
    assert ParamFields().params() == SynthesisParams()  # the same defaults


def test_an_empty_body_names_the_first_required_field(broker, tmp_path) -> None:
    with app_client(broker, tmp_path) as client:
        r = client.post("/synthesize", content=b"", headers={"content-type": "application/json"})
        speech = client.post("/v1/audio/speech", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 422 and (r.json()["field"], r.json()["reason"]) == ("text", "is required"), r.json()
    assert speech.status_code == 422 and speech.json()["reason"] == "is required", speech.json()
