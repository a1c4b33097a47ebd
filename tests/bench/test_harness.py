"""The bench harness at smoke size: it starts its own stack on the generated checkpoint, measures every
way in, and writes the JSON, the Markdown and the plots. Figures here are not checked, only their shape
and their consistency (the full runs are committed under bench/results/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.stack import ROOT


def test_tiny_run_writes_consistent_results(checkpoint_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "--tiny", "--checkpoint", str(checkpoint_dir), "--out", str(out),
           "--name", "smoke"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "smoke.json").read_text())
    assert result["weights"] == "random" and result["machine"]["cores"] >= 1 and result["tokens"] == 12
    assert [lv["concurrency"] for lv in result["levels"]] == [1, 2]
    for lv in result["levels"]:
        assert lv["errors"] == 0 and lv["requests"] >= lv["concurrency"]
        assert 0 < lv["first_audio_p50"] <= lv["first_audio_p95"] and lv["audio_per_wall"] > 0
    ways = {r["way"] for r in result["records"]}
    assert ways == {"sse", "zmq", "regular", "inprocess"}
    assert 0 < result["valid_token_share"] <= 1
    transit = result["transit"]
    assert 0 < transit["zmq_p50"] and 0 < transit["sse_p50"]
    # The same texts and seeds went every way, so each comparison has a ratio.
    for key in ("pipelined_vs_sequential", "regular_vs_streaming"):
        assert result[key]["first_audio_ratio"] > 0, key
    # The timeline is real: each chunk is vocoded after its tokens exist, and arrives after it is vocoded.
    timed = next(r for r in result["records"] if r["way"] == "sse" and r["timeline"])
    for t3, s3gen, arrived in timed["timeline"]:
        assert t3[0] <= t3[1] <= s3gen[1] <= arrived
    markdown = (out / "smoke.md").read_text()
    assert "weights random" in markdown and "| 2 |" in markdown
    for plot in ("smoke-timeline.png", "smoke-latency.png", "smoke-rtf.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG", plot
    # The result file is complete: the report and plots can be rebuilt from it alone.
    again = tmp_path / "again"
    cmd = [sys.executable, "-m", "bench", "--from-json", str(out / "smoke.json"), "--out", str(again)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert (again / "smoke.md").read_text() == markdown
