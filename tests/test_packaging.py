"""What the sdist carries (issue #16): the license, the deployment files beside the
package, and metadata saying what swarmget is and needs (the database libraries only in
the hub/relay extras). Built for real with ``python -m build --sdist`` into a temporary
directory (a few seconds), then listed."""

from __future__ import annotations

import email.parser
import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SHIPPED = [
    "LICENSE",
    "README.md",
    "Dockerfile",
    "deploy/compose.yaml",
    "deploy/config.example.toml",
    "deploy/systemd/swarmget-hub.service",
    "deploy/systemd/swarmget-node.service",
    "src/swarmget/py.typed",
    "src/swarmget/api.py",
]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package (in the dev extra) is not installed")
    out = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (archive,) = out.glob("swarmget-*.tar.gz")
    return tarfile.open(archive)


def test_the_sdist_ships_the_license_and_the_deployment_files(sdist: tarfile.TarFile) -> None:
    names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    missing = [path for path in SHIPPED if path not in names]
    assert not missing


def test_the_metadata_names_license_urls_classifiers_and_extras(sdist: tarfile.TarFile) -> None:
    (info,) = [
        m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
    ]
    handle = sdist.extractfile(info)
    assert handle is not None
    meta = email.parser.Parser().parsestr(handle.read().decode())
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert {"Homepage", "Issues", "Source"} <= set(urls)
    classifiers = meta.get_all("Classifier", [])
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert {"hub", "relay", "postgres", "dev"} <= set(meta.get_all("Provides-Extra", []))
    plain = [r for r in meta.get_all("Requires-Dist", []) if "extra ==" not in r]
    database = ("sqlalchemy", "aiosqlite", "greenlet", "asyncpg")
    assert not [r for r in plain if r.lower().startswith(database)]  # a node needs none


def test_the_license_is_mit_of_the_swarmget_authors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "the swarmget authors" in text
