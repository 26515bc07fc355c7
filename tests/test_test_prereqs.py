"""``scripts/test-prereqs.sh`` (what ``make test`` and so ``.ci/run`` run before pytest):
it hands the command a PostgreSQL URL, keeps one given, and fails when one is required but
cannot be had. (Installing packages and starting servers is exercised by every CI run.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test-prereqs.sh"
PRINT_PG = [sys.executable, "-c", "import os; print(os.environ['SWARMGET_TEST_PG'])"]


def run(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *command],
        env={**os.environ, "SWARMGET_TEST_PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_given_server_is_used_as_is_and_the_command_runs() -> None:
    given = "postgresql+asyncpg://u:p@127.0.0.1:1/given"
    done = run({"SWARMGET_TEST_PG": given}, *PRINT_PG)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == given
    assert "using SWARMGET_TEST_PG as given" in done.stderr


def test_the_command_s_exit_status_is_the_script_s() -> None:
    done = run({"SWARMGET_TEST_PG": "postgresql+asyncpg://x@h/d"}, "sh", "-c", "exit 7")
    assert done.returncode == 7


def test_a_required_server_that_cannot_be_had_is_an_error() -> None:
    env = {"SWARMGET_TEST_PG": "", "SWARMGET_TEST_PG_FROM": "nowhere", "SWARMGET_REQUIRE_PG": "1"}
    done = run(env, "true")
    assert done.returncode == 1
    assert "SWARMGET_TEST_PG_FROM must be debian, pgserver or auto" in done.stderr
    assert "SWARMGET_REQUIRE_PG=1" in done.stderr


def test_without_the_requirement_the_tests_run_and_skip_it() -> None:
    env = {"SWARMGET_TEST_PG": "", "SWARMGET_TEST_PG_FROM": "nowhere", "SWARMGET_REQUIRE_PG": ""}
    done = run(env, *PRINT_PG[:2], "import os; print(repr(os.environ.get('SWARMGET_TEST_PG')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("None", "''")
    assert "the replicated-hub tests skip" in done.stderr
