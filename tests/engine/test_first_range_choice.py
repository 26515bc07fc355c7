"""When a download probes with its first range (issue #14) and when with HEAD as before:
never when nothing may be fetched before the size is known, nor for a resume."""

from __future__ import annotations

from pathlib import Path

from swarmget.engine import DownloadSpec
from swarmget.engine.download import probe_uses_first_range
from swarmget.storage import control_path_for, part_path_for

URL = "http://origin.test/dir/f.iso"


def test_a_fresh_download_probes_with_its_first_range(tmp_path: Path) -> None:
    assert probe_uses_first_range(DownloadSpec(url=URL, output=tmp_path / "out.bin"))
    assert probe_uses_first_range(DownloadSpec(url=URL, output=tmp_path))  # a directory


def test_a_size_limit_keeps_the_head_probe(tmp_path: Path) -> None:
    spec = DownloadSpec(url=URL, output=tmp_path / "out.bin", max_size=10)
    assert not probe_uses_first_range(spec)


def test_a_resume_keeps_the_head_probe(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    part_path_for(out).write_bytes(b"x")
    assert not probe_uses_first_range(DownloadSpec(url=URL, output=out))


def test_a_resume_into_a_directory_is_found_by_the_urls_name(tmp_path: Path) -> None:
    control_path_for(tmp_path / "f.iso").write_bytes(b"{}")
    assert not probe_uses_first_range(DownloadSpec(url=URL, output=tmp_path))
    assert probe_uses_first_range(DownloadSpec(url=URL, output=tmp_path / "other.iso"))


async def test_the_download_reads_the_probes_answer_as_its_first_range(tmp_path: Path) -> None:
    import hashlib

    from swarmget.engine.download import FIRST_RANGE
    from swarmget.run.local import LocalOptions, open_local_download
    from swarmget.testing.origin import open_test_origin

    async with open_test_origin() as origin:
        origin.add_generated("f.bin", 3 * 1024 * 1024 + 17, seed=4)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "out")
        async with open_local_download(spec, LocalOptions(connections=3)) as download:
            result = await download.run()
        stats = origin.stats()
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")
    assert stats.requests_by_method.get("HEAD", 0) == 0
    assert (stats.served[0].start, stats.served[0].end_exclusive) == (0, FIRST_RANGE)
    starts = [s.start for s in stats.served]
    assert starts.count(0) == 1  # the probe's bytes were not asked for again
