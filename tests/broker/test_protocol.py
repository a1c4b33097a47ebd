"""Wire format: every message round-trips, bulk data rides as raw frames, bad frames are refused."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from broker.protocol import (
    Audio,
    Codec,
    Error,
    ErrorCode,
    Failed,
    Job,
    ProtocolError,
    Span,
    Submit,
    TensorSpec,
    Tokens,
    array_frame,
    frame_array,
)
from engine.metrics import Metrics
from engine.params import SynthesisParams


def test_messages_round_trip_with_raw_frames() -> None:
    codec = Codec()
    pcm = np.linspace(-1, 1, 4800, dtype=np.float32)
    msg = Audio(
        job="j", attempt=1, slot="a", seq=3, final=False, tokens=5, sample_rate=24000,
        metrics=Metrics(chunks=3, weights="random"), t3_span=Span(1.0, 2.0), s3gen_span=Span(2.0, 3.0),
    )  # fmt: skip
    frames = codec.encode(msg, memoryview(pcm).cast("B"))
    assert len(frames) == 2 and len(frames[1]) == pcm.nbytes  # PCM is not inside the msgpack header
    decoded, bulk = codec.decode([bytes(f) for f in frames])
    assert decoded == msg
    assert np.array_equal(np.frombuffer(bulk[0], np.float32), pcm)


def test_tagged_union_tells_messages_apart() -> None:
    codec = Codec()
    params = SynthesisParams(temperature=0.6, seed=7)
    submit = Submit(job="x", client="c", text="hi", params=params)
    job = Job(job="x", client="c", attempt=2, epoch="e", text="hi", params=params, stream=True, has_reference=False)
    assert codec.decode(codec.encode(submit))[0] == submit
    assert codec.decode(codec.encode(job))[0] == job


def test_tensor_frames_keep_dtype_and_shape() -> None:
    feat = np.random.default_rng(0).standard_normal((1, 50, 80)).astype(np.float32)
    spec, frame = array_frame(feat)
    assert spec == TensorSpec("", "<f4", (1, 50, 80))
    assert np.array_equal(frame_array(spec, bytes(frame)), feat)
    with pytest.raises(ProtocolError):
        frame_array(TensorSpec("x", "<f4", (2, 80)), bytes(frame))


@pytest.mark.parametrize("frames", [[], [b"\xc1"], [b"\x81\xa4type\xa5bogus"]])
def test_garbage_is_a_protocol_error(frames) -> None:
    with pytest.raises(ProtocolError):
        Codec().decode(frames)


def test_tokens_header_lists_reference_frames() -> None:
    codec = Codec()
    spec = TensorSpec("prompt_token", "<i8", (1, 25))
    msg = Tokens(
        job="j", client="c", attempt=1, seq=1, final=False, generated=12, seed=5, accepted_at=0.0,
        span=Span(0.0, 1.0), reference=[spec],
    )  # fmt: skip
    decoded, _ = codec.decode(codec.encode(msg))
    assert decoded.reference == [spec]


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_round_trips_as_its_string(code: ErrorCode) -> None:
    codec = Codec()
    error = Error(job="j", code=code, message="m")
    frames = codec.encode(error)
    assert msgspec.msgpack.decode(frames[0])["code"] == code.value  # the wire carries the bare string
    decoded, _ = codec.decode(frames)
    assert decoded == error and decoded.code is code
    assert decoded.retryable is code.retryable  # set from the code, never by hand
    assert 400 <= code.status < 600
    failed = Failed(job="j", attempt=1, code=code, message="m")
    assert codec.decode(codec.encode(failed))[0].code is code


def test_the_wire_strings_stay_put() -> None:
    # Clients, dashboards and the frontend match on these strings: renaming one is a protocol change.
    assert {c.value for c in ErrorCode} == {
        "invalid_input", "not_found", "busy", "timeout", "worker_lost", "broker_lost", "cancelled", "gap",
        "internal", "unsubscribed", "unauthorized", "method_not_allowed", "payload_too_large", "connection_busy",
    }  # fmt: skip
    assert (ErrorCode.BUSY.status, ErrorCode.BUSY.retryable) == (503, True)
    assert (ErrorCode.INVALID_INPUT.status, ErrorCode.NOT_FOUND.status, ErrorCode.TIMEOUT.status) == (422, 404, 504)


def test_an_unknown_error_code_is_refused() -> None:
    codec = Codec()
    header = msgspec.msgpack.encode({"type": "error", "job": "j", "code": "exploded", "message": "m"})
    with pytest.raises(ProtocolError, match="exploded"):
        codec.decode([header])
    with pytest.raises(ValueError):
        Error(job="j", code="exploded", message="m")  # type: ignore[arg-type]
    assert Error(job="j", code="busy", message="m").code is ErrorCode.BUSY  # a known bare string is checked in
