"""One dispatch table per receiving loop: known types reach their handler, anything else is logged and
counted (and shows in the broker's stats), never dropped in silence."""

from __future__ import annotations

import logging

from broker.dispatch import Dispatcher
from broker.protocol import Cancel, Ping, Submit
from broker.scheduler import Scheduler
from engine.params import SynthesisParams
from tests.broker.test_scheduler import EPOCH, SETTINGS, RecordingOutbox


def test_known_types_reach_their_handler_and_unknown_ones_are_counted_loudly(caplog) -> None:
    seen: list[tuple[object, int]] = []
    dispatch = Dispatcher("test loop", {Cancel: lambda msg, n: seen.append((msg, n)) or "handled"})
    assert dispatch(Cancel(job="j"), 7) == "handled"
    assert seen == [(Cancel(job="j"), 7)] and dispatch.unknown == 0
    with caplog.at_level(logging.ERROR):
        assert dispatch(Ping(client="c"), 8) is None
        dispatch(Ping(client="c"), 9)
    assert dispatch.unknown == 2 and len(seen) == 1
    assert "test loop" in caplog.text and "Ping" in caplog.text


def test_a_message_a_worker_should_never_send_shows_in_the_broker_stats(caplog) -> None:
    sched = Scheduler(SETTINGS, RecordingOutbox(), EPOCH)
    stray = Submit(job="j", client="c", text="hi", params=SynthesisParams())
    with caplog.at_level(logging.ERROR):
        sched.from_worker(b"w1", stray, 0.0)
    assert sched.stats().unexpected_messages == 1 and "broker backend" in caplog.text
    assert not sched.jobs  # not taken for a submit
