"""The throughput bench at smoke size: two capacities, two levels, each on its own real stack. Only
the result's shape and consistency are checked (full runs are committed under bench/results/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.stack import ROOT


def test_tiny_run_compares_capacities_level_by_level(checkpoint_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.throughput", "--tiny", "--checkpoint", str(checkpoint_dir),
           "--out", str(out), "--name", "smoke"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "smoke.json").read_text())
    assert result["weights"] == "random" and result["tokens"] == 12
    assert [r["capacity"] for r in result["runs"]] == [1, 2]
    for run_ in result["runs"]:
        assert [lv["concurrency"] for lv in run_["levels"]] == [1, 2]
        for lv in run_["levels"]:
            assert lv["errors"] == 0 and lv["requests"] == lv["concurrency"] and lv["audio_per_wall"] > 0
        # ignore_stop: every request did the same work, whatever the capacity.
        assert {r["tokens_generated"] for r in run_["records"]} == {12}
    markdown = (out / "smoke.md").read_text()
    assert "weights random" in markdown and "gain vs capacity 1" in markdown
    assert "| 2 | 2 | 0 |" in markdown  # capacity 2, concurrency 2, no errors
    assert (out / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    again = tmp_path / "again"
    cmd = [sys.executable, "-m", "bench.throughput", "--from-json", str(out / "smoke.json"), "--out", str(again)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert (again / "smoke.md").read_text() == markdown
