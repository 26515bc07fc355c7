"""The /metrics of a real hub, node and relay (processes) follow the Prometheus naming
conventions, and every metric the docs, the Grafana dashboard and the alert rules name is
served by one of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.testing.swarm import open_local_swarm, start_proc

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$")
_NAME = re.compile(r"\b((?:swarmget|process|python)_[a-z0-9_]+)")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


async def _text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        assert resp.status == 200, url
        return await resp.text()


@pytest.fixture
async def scraped(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """service -> its /metrics text, from real processes."""
    async with open_local_swarm(tmp_path, 1) as swarm, aiohttp.ClientSession() as session:
        relay_args = [
            "relay", "--host", "127.0.0.1", "--port", "0", "--cache-dir",
            str(tmp_path / "cache"), "--secret-file", str(swarm.secret_file),
        ]  # fmt: skip
        relay = await start_proc(relay_args, tmp_path / "relay.log", dict(os.environ))
        try:
            yield {
                "hub": await _text(session, f"{swarm.hub.info['url']}/metrics"),
                "node": await _text(session, f"{swarm.node(0).api_url}/metrics"),
                "relay": await _text(session, f"{relay.info['url']}/metrics"),
            }
        finally:
            await relay.stop()


def families(text: str) -> dict[str, str]:
    """name -> type of every ``# TYPE`` line; a name twice is an error."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _TYPE.match(line)
        if match:
            name, kind = match.groups()
            assert name not in out, f"metric family {name} twice"
            out[name] = kind
    return out


def served_names(texts: dict[str, str]) -> set[str]:
    """Every family and sample name the services serve."""
    names: set[str] = set()
    for text in texts.values():
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                names.add(line.split()[2])
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def convention_problems(name: str, kind: str) -> list[str]:
    problems = []
    if not re.fullmatch(r"swarmget_[a-z0-9]+(_[a-z0-9]+)*", name):
        problems.append("not swarmget_snake_case")
    if kind == "counter" and not name.endswith("_total"):
        problems.append("a counter must end in _total")
    if kind != "counter" and name.endswith("_total"):
        problems.append("only counters end in _total")
    if name.removesuffix("_total").count("_total"):
        problems.append("_total only at the end")
    if "bytes" in name and not re.search(r"_bytes(_total)?$", name):
        problems.append("bytes as the unit suffix: _bytes (or _bytes_total)")
    if kind == "histogram" and not name.endswith(("_seconds", "_bytes", "_size")):
        problems.append("histograms end in their unit: _seconds, _bytes or _size (a count)")
    for unit in ("_ms", "_millis", "_kb", "_mb", "_minutes"):
        if unit in name:
            problems.append(f"base units only, not {unit}")
    return problems


async def test_every_service_follows_the_naming_conventions(scraped: dict[str, str]) -> None:
    for service, text in scraped.items():
        found = families(text)
        ours = {n: k for n, k in found.items() if n.startswith("swarmget_")}
        assert ours, service
        problems = {n: p for n, k in ours.items() if (p := convention_problems(n, k))}
        assert not problems, f"{service}: {problems}"
        # the default collectors are kept (process: CPU, memory, open files; Python's GC)
        for default in ("process_cpu_seconds_total", "process_open_fds", "python_info"):
            assert default in found, f"{service}: no {default}"


async def test_the_node_serves_the_conventional_names(scraped: dict[str, str]) -> None:
    node = families(scraped["node"])
    for name in (
        "swarmget_origin_received_bytes_total",
        "swarmget_peer_received_bytes_total",
        "swarmget_helper_sent_bytes_total",
        "swarmget_downloads_finished_total",
    ):
        assert node.get(name) == "counter", name
    assert node.get("swarmget_download_duration_seconds") == "histogram"
    assert 'swarmget_helper_refusals_total{reason="busy"} 0.0' in scraped["node"]
    relay = families(scraped["relay"])
    assert relay.get("swarmget_relay_cache_hits_total") == "counter"
    assert relay.get("swarmget_relay_cache_misses_total") == "counter"


async def test_promtool_finds_nothing_to_say(scraped: dict[str, str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'; .ci/run installs it)")
    for service, text in scraped.items():
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0, f"{service}: {lint.stdout}{lint.stderr}"


def _named_in(text: str) -> set[str]:
    return set(_NAME.findall(text))


def _deploy_md_metrics() -> set[str]:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = doc.split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    return _named_in(section)


@pytest.mark.parametrize(
    "where",
    ["deploy/grafana-dashboard.json", "deploy/prometheus-alerts.yml", "docs/deploy.md#Monitoring"],
)
async def test_every_metric_named_in_ops_files_is_served(
    scraped: dict[str, str], where: str
) -> None:
    if where.endswith("#Monitoring"):
        named = _deploy_md_metrics()
    else:
        text = (ROOT / where).read_text()
        if where.endswith(".json"):
            json.loads(text)  # valid JSON, as Grafana imports it
        named = _named_in(text)
    assert len(named) >= 5, named
    served = served_names(scraped)
    missing = sorted(n for n in named if n not in served)
    assert not missing, f"{where} names metrics no service serves: {missing}"
