"""swarmget.destination: where a download ends, and the rules on it, in one place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmget.core.errors import (
    DestinationExists,
    DestinationOutside,
    FileTooLarge,
    UsageError,
)
from swarmget.destination import (
    Output,
    check_destination,
    destination_exists,
    destination_for,
    inside_download_dir,
    relative_to_download_dir,
    resolve_output,
)

# --- where the file goes -----------------------------------------------------------------------


def test_no_output_is_the_servers_name_in_the_current_directory(tmp_path: Path) -> None:
    assert resolve_output(None, "f.iso", cwd=tmp_path) == Output(tmp_path / "f.iso", False)


def test_an_output_directory_gets_the_servers_name(tmp_path: Path) -> None:
    assert resolve_output(tmp_path, "f.iso") == Output(tmp_path / "f.iso", named_by_user=False)


@pytest.mark.parametrize("exists", [False, True])
def test_an_output_file_is_named_by_the_user(tmp_path: Path, exists: bool) -> None:
    target = tmp_path / "mine.bin"
    if exists:
        target.write_bytes(b"x")
    assert resolve_output(target, "f.iso") == Output(target, named_by_user=True)


def test_destination_for_refuses_an_existing_file_without_force(tmp_path: Path) -> None:
    (tmp_path / "f.iso").write_bytes(b"x")
    with pytest.raises(DestinationExists, match="--force"):
        destination_for(tmp_path, "f.iso", force=False, size=1, max_size=None)
    path = destination_for(tmp_path, "f.iso", force=True, size=1, max_size=None)
    assert path == tmp_path / "f.iso"


def test_destination_for_refuses_a_size_over_the_limit(tmp_path: Path) -> None:
    with pytest.raises(FileTooLarge):
        destination_for(tmp_path, "f.iso", force=False, size=11, max_size=10)
    assert destination_for(tmp_path, "f.iso", force=False, size=10, max_size=10).name == "f.iso"


def test_a_link_the_server_named_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"keep")
    os.symlink(tmp_path / "target", tmp_path / "f.iso")
    with pytest.raises(DestinationExists, match="server chose"):
        destination_for(tmp_path, "f.iso", force=True, size=1, max_size=None)
    named = destination_for(tmp_path / "f.iso", "other", force=True, size=1, max_size=None)
    assert named == tmp_path / "f.iso"  # the user named the link: --force may replace it


def test_a_directory_is_never_a_destination(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(DestinationExists, match="is a directory"):
        check_destination(tmp_path / "d", force=True)


def test_the_exists_error_is_one_usage_error(tmp_path: Path) -> None:
    exc = destination_exists(tmp_path / "f")
    assert isinstance(exc, UsageError)
    assert exc.code == "destination_exists"


# --- inside a node's download directory ------------------------------------------------------


def test_no_requested_name_is_the_directory_itself(tmp_path: Path) -> None:
    assert inside_download_dir(tmp_path, None) == tmp_path.resolve()
    assert inside_download_dir(tmp_path, "") == tmp_path.resolve()


@pytest.mark.parametrize("requested", ["f.bin", "sub/dir/f.bin", "./f.bin"])
def test_relative_names_stay_inside(tmp_path: Path, requested: str) -> None:
    got = inside_download_dir(tmp_path, requested)
    assert got == (tmp_path / requested).resolve()
    assert got.is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("requested", ["/etc/passwd", "../x", "a/../../x", "a\x00b", "."])
def test_escapes_are_refused(tmp_path: Path, requested: str) -> None:
    with pytest.raises(DestinationOutside):
        inside_download_dir(tmp_path, requested)


def test_a_link_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    base, elsewhere = tmp_path / "downloads", tmp_path / "elsewhere"
    base.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, base / "out")
    with pytest.raises(DestinationOutside):
        inside_download_dir(base, "out/f.bin")


def test_relative_to_download_dir(tmp_path: Path) -> None:
    assert relative_to_download_dir(tmp_path, tmp_path / "a" / "f.bin") == "a/f.bin"
    with pytest.raises(DestinationOutside):
        relative_to_download_dir(tmp_path / "a", tmp_path / "f.bin")
    with pytest.raises(DestinationOutside):
        relative_to_download_dir(tmp_path, tmp_path)


def test_outside_is_a_usage_error_with_its_own_code() -> None:
    assert issubclass(DestinationOutside, UsageError)
    assert DestinationOutside.code == "destination_outside"
