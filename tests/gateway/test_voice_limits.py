"""One set of reference-voice limits, `CHATTERBOX_VOICE_*`, for the engine and the gateway alike.

The gateway once read its own `CHATTERBOX_GATEWAY_VOICE_*`: with `CHATTERBOX_VOICE_MAX_SECONDS=30` it stored a
50 s voice that every synthesis then refused with 422. The app here is the real one, built from the environment
as `python -m gateway` builds it, through Litestar's in-process test client; it talks to a real broker process
(no slot: `POST /voices` never reaches one).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from litestar.testing import TestClient

from bench.stack import Proc, broker_env, broker_settings
from broker.settings import BrokerSettings
from engine.settings import EngineSettings, VoiceLimits
from gateway.app import create_app
from gateway.settings import GatewaySettings

ENV = {"CHATTERBOX_VOICE_MAX_SECONDS": "30"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    settings = broker_settings()
    proc = Proc(["-m", "broker"], broker_env(settings), tmp_path_factory.mktemp("broker") / "broker.log")
    yield settings
    proc.stop()


def tone(seconds: float) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(24000 * seconds)) / 24000
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 220 * t), 24000, format="WAV")  # 24 kHz: no resampling
    return buf.getvalue()


def test_voice_limits_come_from_the_engine_variables() -> None:
    limits = VoiceLimits.from_env(ENV)
    assert limits.max_seconds == 30
    assert limits == VoiceLimits(max_seconds=30)  # the others keep their defaults
    assert EngineSettings.from_env(ENV).voice == limits == GatewaySettings.from_env(ENV).voice


def test_the_old_gateway_variable_is_refused_naming_the_new_one() -> None:
    with pytest.raises(ValueError, match="CHATTERBOX_GATEWAY_VOICE_MAX_SECONDS") as exc:
        GatewaySettings.from_env({"CHATTERBOX_GATEWAY_VOICE_MAX_SECONDS": "30"})
    assert "set CHATTERBOX_VOICE_MAX_SECONDS" in str(exc.value)


def test_upload_is_held_to_the_engine_limit(broker: BrokerSettings, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = broker_env(broker) | ENV | {"CHATTERBOX_GATEWAY_DATA_DIR": str(tmp_path)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    gateway, engine = GatewaySettings.from_env(), EngineSettings.from_env()
    assert gateway.voice == engine.voice and gateway.voice.max_seconds == 30
    with TestClient(create_app(), timeout=30) as client:  # settings from the environment, as at start
        long = client.post("/voices", data={"name": "long"}, files={"file": ("l.wav", tone(50), "audio/wav")})
        assert long.status_code == 422, long.text
        body = long.json()
        assert body["field"] == "audio_prompt"
        assert "the maximum is 30 s" in body["reason"], body
        ok = client.post("/voices", data={"name": "ok"}, files={"file": ("o.wav", tone(20), "audio/wav")})
        assert ok.status_code == 201, ok.text
        assert ok.json()["seconds"] == 20
        assert [v["name"] for v in client.get("/voices").json()] == ["ok"]
