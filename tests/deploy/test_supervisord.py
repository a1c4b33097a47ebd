"""supervisord.conf as the README uses it: `supervisorctl -c supervisord.conf` with nothing exported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.stack import ROOT

SUPERVISORCTL = Path(sys.executable).parent / "supervisorctl"


def test_supervisorctl_reads_the_config_with_nothing_exported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATTERBOX_")}
    run = subprocess.run(
        [str(SUPERVISORCTL), "-c", "supervisord.conf", "status"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert "cannot be expanded" not in out, out
    # No supervisord runs here: it says so about the socket under the repo's own logs/ (exit 4).
    assert f"unix://{ROOT}/logs/supervisor.sock" in out and run.returncode == 4, out
