"""The README's first command runs end to end (a smaller file, same code path)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_verifies() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swarmget.demo", "--size-mib", "16", "--cap-mib", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "alone" in proc.stdout
    assert "swarm" in proc.stdout
    assert proc.stdout.count("sha256") >= 2  # both copies verified
