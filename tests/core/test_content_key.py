"""Content keys (issue #15): when two downloads are the same content and may share bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.content import ContentKey, normalize_url, strong_last_modified
from swarmget.core.digests import Digest
from swarmget.core.errors import InvalidURL
from swarmget.core.http_fields import Validator
from swarmget.core.probe import Done, Fetch, OriginInfo, Probe

URL = "https://cdn.example.org/pub/image.iso?v=2"
LM = "Tue, 01 Dec 2026 10:00:00 GMT"
DATE_LATER = "Tue, 01 Dec 2026 10:01:00 GMT"  # exactly 60 s later: strong
DATE_SOON = "Tue, 01 Dec 2026 10:00:59 GMT"  # 59 s: weak
SHA = "ab" * 32


def key(**kw: object) -> ContentKey:
    args: dict[str, object] = {"final_url": URL, "size": 1000, "etag": '"v1"'}
    args.update(kw)
    return ContentKey.from_probe(**args)  # type: ignore[arg-type]


# --- URL normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://CDN.Example.ORG/a/B.iso", "https://cdn.example.org/a/B.iso"),
        ("https://h:443/f", "https://h/f"),
        ("http://h:80/f", "http://h/f"),
        ("http://h:443/f", "http://h:443/f"),  # not http's default port
        ("https://h:8443/f", "https://h:8443/f"),
        ("https://h/f#part2", "https://h/f"),
        ("https://h", "https://h/"),
        ("https://h/f?b=2&a=1", "https://h/f?b=2&a=1"),  # query kept as is
        ("https://[::1]:443/f", "https://[::1]/f"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://h/f", "https://u:p@h/f", "/relative", ""])
def test_normalize_url_refuses_what_validate_url_refuses(url: str) -> None:
    with pytest.raises(InvalidURL):
        normalize_url(url)


hosts = st.sampled_from(["example.org", "CDN.Example.ORG", "h", "10.0.0.1"])
paths = st.text(alphabet="abcXYZ/._-%20", max_size=12).map(lambda p: "/" + p)
queries = st.text(alphabet="abc=&XYZ12", max_size=10)


@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "Https"]),
    host=hosts,
    path=paths,
    query=queries,
    fragment=st.text(alphabet="abc", max_size=5),
    default_port=st.booleans(),
)
def test_normalisation_is_idempotent_and_ignores_spelling(
    scheme: str, host: str, path: str, query: str, fragment: str, default_port: bool
) -> None:
    port = {"http": ":80", "https": ":443"}[scheme.lower()] if default_port else ""
    url = f"{scheme}://{host}{port}{path}" + (f"?{query}" if query else "")
    spelled = url + (f"#{fragment}" if fragment else "")
    once = normalize_url(spelled)
    assert normalize_url(once) == once
    plain = f"{scheme.lower()}://{host.lower()}{path}" + (f"?{query}" if query else "")
    assert once == normalize_url(plain)
    assert "#" not in once
    if query:
        assert once.endswith("?" + query)  # the query is never rewritten


# --- validators ---------------------------------------------------------------------------------


def test_last_modified_is_strong_only_60_seconds_before_date() -> None:
    assert strong_last_modified(LM, DATE_LATER)
    assert not strong_last_modified(LM, DATE_SOON)
    assert not strong_last_modified(LM, None)
    assert not strong_last_modified("yesterday", DATE_LATER)
    assert not strong_last_modified(LM, "not a date")


def test_weak_etag_alone_is_not_shareable() -> None:
    k = key(etag='W/"v1"')
    assert k.etag is None
    assert not k.shareable
    assert "no strong validator" in str(k.not_shareable_reason())


def test_weak_etag_with_sha256_is_shareable() -> None:
    assert key(etag='W/"v1"', sha256=SHA.upper()).shareable
    assert key(etag='W/"v1"', sha256=SHA.upper()).sha256 == SHA


def test_no_validator_is_not_shareable_unless_sha256_known() -> None:
    assert not key(etag=None).shareable
    assert key(etag=None, sha256=SHA).shareable


def test_last_modified_alone_needs_a_date_60s_later() -> None:
    assert key(etag=None, last_modified=LM, date=DATE_LATER).shareable
    assert not key(etag=None, last_modified=LM, date=DATE_SOON).shareable
    assert not key(etag=None, last_modified=LM).shareable


def test_unknown_size_is_not_shareable() -> None:
    k = key(size=None, sha256=SHA)
    assert not k.shareable
    assert "size" in str(k.not_shareable_reason())


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        key(size=-1)
    with pytest.raises(ValueError, match="sha256"):
        key(sha256="abc")
    with pytest.raises(ValueError, match="strong ETag"):
        ContentKey(url=URL, size=1, etag='W/"x"')


# --- same content or not -----------------------------------------------------------------------


def test_a_changed_validator_or_size_is_different_content() -> None:
    base = key()
    assert base.same_content(key(final_url="HTTPS://CDN.example.org:443/pub/image.iso?v=2#x"))
    for other in (key(etag='"v2"'), key(size=1001), key(final_url=URL + "&x=1")):
        assert not base.same_content(other)
        assert base.index_name() != other.index_name()
    lm = key(etag=None, last_modified=LM, date=DATE_LATER)
    lm2 = key(etag=None, last_modified="Tue, 01 Dec 2026 10:00:01 GMT", date=DATE_LATER)
    assert not lm.same_content(lm2)


def test_a_known_sha256_only_adds_a_condition() -> None:
    base = key()
    with_sha = key(sha256=SHA)
    assert base.same_content(with_sha)
    assert with_sha.same_content(base)
    assert base.index_name() == with_sha.index_name()  # they meet at the hub
    assert not with_sha.same_content(key(sha256="cd" * 32))


def test_without_validator_only_equal_digests_match() -> None:
    a = key(etag=None, sha256=SHA)
    assert a.same_content(key(etag=None, sha256=SHA))
    assert not a.same_content(key(etag=None))
    assert not key(etag=None).same_content(key(etag=None))
    assert a.index_name() != key(etag=None, sha256="cd" * 32).index_name()


def test_index_name_hides_the_url() -> None:
    k = key(final_url="https://h/f?X-Amz-Signature=secret")
    assert "secret" not in k.index_name()
    assert len(k.index_name()) == 64


@given(
    etag=st.one_of(st.none(), st.text(alphabet="abc123", min_size=1, max_size=6)),
    size=st.integers(min_value=0, max_value=2**40),
    other_size=st.integers(min_value=0, max_value=2**40),
    sha=st.one_of(st.none(), st.just(SHA)),
)
def test_same_content_is_symmetric_and_follows_size(
    etag: str | None, size: int, other_size: int, sha: str | None
) -> None:
    quoted = None if etag is None else f'"{etag}"'
    a = key(etag=quoted, size=size, sha256=sha)
    b = key(etag=quoted, size=other_size, sha256=sha)
    assert a.same_content(b) == b.same_content(a)
    if size != other_size:
        assert not a.same_content(b)
    if a.same_content(b):
        assert a.index_name() == b.index_name()
    assert a.same_content(a) == a.shareable


# --- from a probe's OriginInfo ------------------------------------------------------------------


def origin_info(**kw: object) -> OriginInfo:
    args: dict[str, object] = {
        "url": "https://h/start",
        "final_url": "HTTPS://H:443/f.iso#x",
        "size": 1000,
        "validator": Validator(etag='"v1"'),
        "accepts_ranges": True,
        "filename": "f.iso",
    }
    args.update(kw)
    return OriginInfo(**args)  # type: ignore[arg-type]


def test_from_origin_info_uses_the_final_url_and_validator() -> None:
    k = ContentKey.from_origin_info(origin_info())
    assert k == ContentKey(url="https://h/f.iso", size=1000, etag='"v1"')
    lm = origin_info(validator=Validator(last_modified=LM))
    assert not ContentKey.from_origin_info(lm).shareable  # no Date: weak
    assert ContentKey.from_origin_info(lm, date=DATE_LATER).last_modified == LM


def test_from_origin_info_takes_the_users_sha256_before_the_origins() -> None:
    repr_digest = Digest("sha256", "cd" * 32)
    info = origin_info(validator=None, digests=(Digest("sha512", "ef" * 64), repr_digest))
    assert ContentKey.from_origin_info(info).sha256 == "cd" * 32
    user = Digest("sha256", SHA)
    assert ContentKey.from_origin_info(info, checksum=user).sha256 == SHA
    md5 = Digest("md5", "0" * 32)  # not a sha256: the origin's is used
    assert ContentKey.from_origin_info(info, checksum=md5).sha256 == "cd" * 32
    assert not ContentKey.from_origin_info(origin_info(validator=None)).shareable


def test_a_last_modified_only_origin_is_shareable_through_the_probes_date() -> None:
    """The probe keeps the answer's ``Date`` (``OriginInfo.date``), so a Last-Modified at
    least 60 s before it pins the bytes without the caller passing ``date``."""
    probe = Probe("https://h/f.iso")
    assert isinstance(probe.start(), Fetch)
    head = {"Content-Length": "1000", "Accept-Ranges": "bytes", "last-modified": LM}
    done = probe.on_answer(200, head | {"date": DATE_LATER}, now_epoch=0.0)
    assert isinstance(done, Done)
    assert done.info.date == DATE_LATER
    k = ContentKey.from_origin_info(done.info)
    assert k.shareable
    assert k.last_modified == LM
    soon = Probe("https://h/f.iso")
    soon.start()
    early = soon.on_answer(200, head | {"Date": DATE_SOON}, now_epoch=0.0)
    assert isinstance(early, Done)
    assert not ContentKey.from_origin_info(early.info).shareable  # 59 s: weak
    assert early.info == done.info  # the Date is a fact of one answer, not of the file
    assert ContentKey.from_origin_info(early.info, date=DATE_LATER).shareable  # caller's wins


def test_a_range_probe_keeps_the_date_too() -> None:
    probe = Probe("https://h/f.iso")
    probe.start()
    assert isinstance(probe.on_answer(405, {}, now_epoch=0.0), Fetch)  # HEAD refused
    answer = {"Content-Range": "bytes 0-0/1000", "Last-Modified": LM, "Date": DATE_LATER}
    done = probe.on_answer(206, answer, now_epoch=0.0)
    assert isinstance(done, Done)
    assert ContentKey.from_origin_info(done.info).last_modified == LM
