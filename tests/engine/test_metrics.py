"""The one stream tally (Metrics.add_audio / end) that every counter of a stream uses."""

import pytest

from engine.audio import SAMPLE_RATE
from engine.metrics import Metrics


def test_first_audio_is_the_first_chunk_with_samples_and_rtf_follows_the_clock() -> None:
    tally = Metrics()
    tally.add_audio(0, SAMPLE_RATE, 0.5)  # an empty chunk (everything held back) is no audio yet
    assert tally.first_chunk_latency is None and tally.rtf is None and tally.chunks == 1
    tally.add_audio(SAMPLE_RATE, SAMPLE_RATE, 2.0)
    tally.add_audio(SAMPLE_RATE // 2, SAMPLE_RATE, 3.0)
    assert tally.first_chunk_latency == 2.0
    assert tally.chunks == 3 and tally.audio_seconds == pytest.approx(1.5)
    assert tally.total_latency == 3.0 and tally.rtf == pytest.approx(2.0)
    tally.end(4.5)  # the stream's end, after its last chunk: time moves on, nothing else does
    assert tally.chunks == 3 and tally.first_chunk_latency == 2.0
    assert tally.total_latency == 4.5 and tally.rtf == pytest.approx(3.0)


def test_a_stream_without_audio_has_no_rtf() -> None:
    tally = Metrics()
    tally.end(1.0)
    assert tally.rtf is None and tally.audio_seconds == 0.0 and tally.first_chunk_latency is None
