"""The systemd units in deploy/systemd: valid for ``systemd-analyze verify``, hardened to an
exposure of at most 3.0 ("OK") by ``systemd-analyze security --offline``, with the settings
docs/deploy.md relies on (an open-file limit, writable state and download directories)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
INSTALLED = "/opt/swarmget/bin/swarmget"  # where docs/deploy.md installs the command
MAX_EXPOSURE = 3.0


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd')")
    return path


def local_copy(unit: Path, tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at this environment's swarmget (verify checks
    that the command exists)."""
    here = Path(sys.executable).parent / "swarmget"
    assert here.exists(), here
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED, str(here)))
    return copy


def settings(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_there_is_a_unit_for_each_service() -> None:
    assert {u.name for u in UNITS} == {
        "swarmget-hub.service",
        "swarmget-node.service",
        "swarmget-relay.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_without_a_warning(unit: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [analyze(), "verify", "--man=no", str(local_copy(unit, tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert not run.stderr.strip(), run.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_exposure_is_ok(unit: Path) -> None:
    run = subprocess.run(
        [analyze(), "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", run.stdout)
    assert match, run.stdout + run.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, match.group(0)
    assert match.group(2) == "OK", match.group(0)


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_has_the_documented_limits_and_directories(unit: Path) -> None:
    s = settings(unit)
    assert s["LimitNOFILE"] == ["65536"]
    assert s["User"] == ["swarmget"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert s["ExecStart"][0].startswith(INSTALLED)
    writable = " ".join(s["ReadWritePaths"])
    working = s["WorkingDirectory"][0]
    assert working in writable.split()
    if unit.name == "swarmget-node.service":
        assert "/srv/downloads" in writable.split()  # deploy.md's download_dir
        assert "--state-dir /var/lib/swarmget/node" in s["ExecStart"][0]
