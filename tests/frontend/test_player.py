"""The built page in Debian's Chromium (headless, driven by Playwright), served by the gateway of a real
stack on the generated checkpoint. The audio is noise; the timing, scheduling and cancelling are real.

The page is the product's own bundle (frontend/dist, built by `make test`); the test reads the player's
chunk schedule from its "Chunk schedule" panel, where users see it too.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from bench.stack import ROOT, Stack, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DIST = ROOT / "frontend" / "dist"
ARTIFACTS = ROOT / "out" / "test-artifacts"
LOAD_TIMEOUT = 240

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and (DIST / "index.html").exists()),
    reason="needs /usr/bin/chromium and the built frontend (make test installs and builds both)",
)


@pytest.fixture(scope="module")
def stack(checkpoint_dir, tmp_path_factory: pytest.TempPathFactory):
    # Short streams: random weights rarely sample the stop token, so cap the tokens per request.
    env = {"CHATTERBOX_MAX_NEW_TOKENS": "40", "CHATTERBOX_FIRST_CHUNK_SIZE": "6"}
    s = Stack(tmp_path_factory.mktemp("browser-stack"), str(checkpoint_dir), ("w",), env=env)
    try:
        (url,) = s.serve({"CHATTERBOX_GATEWAY_FRONTEND_DIR": str(DIST)}, timeout=LOAD_TIMEOUT)
        yield s, url
    finally:
        s.stop()
        print(s.logs())


@pytest.fixture(scope="module")
def page(stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"]
        )
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.goto(stack[1])
        yield page
        browser.close()


def timing(page) -> dict:
    return json.loads(page.get_by_test_id("timing").text_content())


def wait_status(page, *states: str, timeout: float = 180) -> str:
    pattern = "|".join(states)
    page.wait_for_selector("[data-testid=player][data-status]", timeout=1000)
    page.wait_for_function(
        f"document.querySelector('[data-testid=player]').dataset.status.match(/^({pattern})$/)",
        timeout=timeout * 1000,
    )
    return page.get_by_test_id("player").get_attribute("data-status")


def test_page_warns_about_random_weights(page) -> None:
    banner = page.get_by_test_id("random-banner")
    banner.wait_for(timeout=10_000)
    assert "random weights" in banner.text_content()


def test_stream_plays_chunks_back_to_back_and_downloads_the_whole_wav(page) -> None:
    page.get_by_test_id("text").fill("The browser plays each chunk where the last one ended.")
    page.get_by_test_id("stream").click()
    # Pause at once: the audio clock stops, so on this slow CPU (several seconds of compute per second
    # of audio) chunks still arrive "in time" and must be scheduled exactly back to back.
    page.get_by_test_id("pause").click()
    assert wait_status(page, "done", "error") == "done"
    t = timing(page)
    chunks = t["chunks"]
    assert len(chunks) >= 2
    assert t["firstScheduledAt"] < t["doneAt"]  # playback was scheduled before the stream ended
    for prev, cur in itertools.pairwise(chunks):
        assert abs(cur["start"] - (prev["start"] + prev["duration"])) < 0.001, (prev, cur)
    assert not any(c["late"] for c in chunks) and page.get_by_test_id("underruns").text_content() == "0"
    page.get_by_test_id("pause").click()  # resume: the whole utterance plays
    streamed = sum(c["duration"] for c in chunks)
    page.wait_for_timeout(int(1000 * streamed) + 500)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "player-after-playback.png"), full_page=True)
    with page.expect_download() as info:
        page.get_by_test_id("download").click()
    wav, sr = sf.read(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert sr == 24000 and abs(len(wav) / sr - streamed) < 1e-3


def test_late_chunks_count_as_underruns_without_overlap(page) -> None:
    page.get_by_test_id("text").fill("Unpaused, this CPU cannot keep up, and the player says so.")
    page.get_by_test_id("stream").click()
    assert wait_status(page, "done", "error") == "done"
    chunks = timing(page)["chunks"]
    late = [c for c in chunks if c["late"]]
    assert int(page.get_by_test_id("underruns").text_content()) == len(late)
    for prev, cur in itertools.pairwise(chunks):
        assert cur["start"] >= prev["start"] + prev["duration"] - 1e-6  # never overlapping


def test_stop_cancels_the_job_on_the_server(page, stack) -> None:
    s, url = stack
    page.get_by_test_id("text").fill("This one is stopped after its first chunk.")
    page.get_by_test_id("stream").click()
    # This stream's own first chunk: the panel still shows the previous stream until React re-renders.
    page.wait_for_function(
        "(() => { const q = (id) => document.querySelector(`[data-testid=${id}]`);"
        " return q('player').dataset.status === 'streaming' && Number(q('chunks').textContent) >= 1"
        " && q('last-job').textContent !== ''; })()",
        timeout=120_000,
    )
    job = page.get_by_test_id("last-job").text_content()
    assert job
    page.get_by_test_id("stop").click()
    assert wait_status(page, "stopped") == "stopped"
    log = s.workers["w", "t3"]
    wait_for(lambda: re.search(rf"job {job} stopped [\d.]+ s after its cancel", log.text()), 30, "T3 to stop")
    wait_for(lambda: httpx.get(f"{url}/stats").json()["slots"][0]["in_flight"] == 0, 30, "the slot to free")


def test_bad_input_shows_the_servers_message(page) -> None:
    page.get_by_test_id("text").fill("")
    page.get_by_test_id("stream").click()
    error = page.get_by_test_id("error")
    error.wait_for(timeout=10_000)
    assert error.text_content().startswith("text: ")
    page.get_by_test_id("regular").click()
    page.wait_for_function("document.querySelector('[data-testid=error]')?.textContent.startsWith('text: ')")
