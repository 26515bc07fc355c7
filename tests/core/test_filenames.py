"""File names from Content-Disposition and URLs, and sanitising: unit and property tests."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from swarmget.core.filenames import (
    FALLBACK_NAME,
    MAX_NAME_BYTES,
    WORK_SUFFIX,
    choose_filename,
    filename_from_content_disposition,
    filename_from_url,
    sanitize_filename,
)

# --- Content-Disposition (RFC 6266 §5 examples and common server output) ------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("attachment; filename=example.html", "example.html"),
        ('INLINE; FILENAME= "an example.html"', "an example.html"),
        ("attachment; filename*=UTF-8''%e2%82%ac%20rates", "€ rates"),
        (
            "attachment; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates",
            "€ rates",
        ),
        ("attachment; filename*=utf-8''%e2%82%ac%20rates; filename=\"EURO\"", "€ rates"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates", "£ rates"),
        ('attachment; filename="a \\"quoted\\" name.txt"', 'a "quoted" name.txt'),
        ('attachment; filename="semi;colon.txt"; size=3', "semi;colon.txt"),
        ("attachment; filename*=\"UTF-8''quoted%20ext.txt\"", "quoted ext.txt"),
        ("filename=bare.txt", "bare.txt"),
        ("attachment; junk; filename=after-junk.bin", "after-junk.bin"),
        ("attachment; filename=first.txt; filename=second.txt", "first.txt"),
    ],
)
def test_content_disposition(value: str, expected: str) -> None:
    assert filename_from_content_disposition(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("attachment", None),
        ("inline", None),
        ("", None),
        ("attachment; filename=", None),
        # an undecodable filename* falls back to filename
        ("attachment; filename*=koi8-r''%C1; filename=plain.txt", "plain.txt"),
        ("attachment; filename*=UTF-8''%ff%fe; filename=plain.txt", "plain.txt"),
        ("attachment; filename*=nonsense; filename=plain.txt", "plain.txt"),
    ],
)
def test_content_disposition_without_usable_name(value: str, expected: str | None) -> None:
    assert filename_from_content_disposition(value) == expected


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/dir/file.iso", "file.iso"),
        ("http://h/dir/my%20file%E2%82%AC.iso?x=1#y", "my file€.iso"),
        ("http://h/get.php?file=other.iso", "get.php"),
        ("http://h/dir/", None),
        ("http://h", None),
        ("http://h/a%2Fb", "a/b"),  # decoded; sanitize_filename deals with the "/"
        ("http://h/bad%ff", "bad\ufffd"),
    ],
)
def test_filename_from_url(url: str, expected: str | None) -> None:
    assert filename_from_url(url) == expected


# --- sanitising ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("file.iso", "file.iso"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("dir/", "dir"),
        ("..", FALLBACK_NAME),
        (".", FALLBACK_NAME),
        ("...", FALLBACK_NAME),
        ("/", FALLBACK_NAME),
        ("", FALLBACK_NAME),
        ("   ", FALLBACK_NAME),
        ("\x00\x01\x7f", FALLBACK_NAME),
        (".bashrc", "bashrc"),  # a server never chooses a hidden file
        ("..hidden", "hidden"),
        (" . .profile", "profile"),
        ("/home/u/.ssh/authorized_keys", "authorized_keys"),
        (".ssh/", "ssh"),
        ("na\x00me\x1b.txt", "name.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ('a<b>c:d"e|f?g*h.txt', "a_b_c_d_e_f_g_h.txt"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("trailing.dots...", "trailing.dots"),
        ("CON", "_CON"),
        ("lpt1.txt", "_lpt1.txt"),
        ("console.txt", "console.txt"),
        ("lone\udc80surrogate", "lonesurrogate"),
        ("€ rates", "€ rates"),
    ],
)
def test_sanitize_filename(name: str, expected: str) -> None:
    assert sanitize_filename(name) == expected


def test_sanitize_truncates_to_255_bytes_keeping_extension() -> None:
    long = "é" * 300 + ".tar.gz"
    out = sanitize_filename(long)
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
    assert out.endswith(".gz")
    assert out.startswith("é")
    # the cut never splits a multi-byte character
    out.encode("utf-8").decode("utf-8")


def test_sanitize_truncates_without_extension() -> None:
    out = sanitize_filename("x" * 1000)
    assert out == "x" * MAX_NAME_BYTES


@pytest.mark.parametrize("length", [241, 242, 246, 250, 255, 300])
def test_long_names_leave_room_for_the_part_and_control_files(length: int) -> None:
    name = "n" * (length - 4) + ".iso"
    out = sanitize_filename(name)
    assert len((out + ".part.json.tmp").encode("utf-8")) <= 255
    assert out.endswith(".iso")
    assert out == name if length <= 241 else out.startswith("nnn")


def test_choose_filename_prefers_content_disposition() -> None:
    cd = "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    assert choose_filename(cd, "http://h/final.bin", "http://h/orig.bin") == "résumé.pdf"


def test_choose_filename_falls_back_in_order() -> None:
    assert choose_filename(None, "http://h/final.bin", "http://h/orig.bin") == "final.bin"
    assert choose_filename("attachment", "http://h/", "http://h/orig.bin") == "orig.bin"
    assert choose_filename("attachment; filename=..", "http://h/..", "http://h/") == "download"
    assert choose_filename("inline; filename=../../x.sh", "http://h/", "http://h/") == "x.sh"


# --- properties ---------------------------------------------------------------------------------

_names = st.text(
    st.characters(codec=None, exclude_categories=()),  # everything, surrogates included
    max_size=400,
) | st.text(alphabet="./\\ \x00abc:é", max_size=40)


@given(_names)
@example("." * 300)
@example("a" + " " * 300)
@example("con" + " " * 300 + ".txt")
@example("x" * 250 + "." + "é" * 10)
def test_sanitize_properties(name: str) -> None:
    out = sanitize_filename(name)
    assert out
    assert "/" not in out
    assert "\\" not in out
    assert "\x00" not in out
    assert out not in (".", "..")
    assert not out.startswith(".")  # never a hidden file
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
    assert len((out + WORK_SUFFIX).encode("utf-8")) <= 255
    assert out == out.strip()
    assert sanitize_filename(out) == out  # idempotent


@given(st.text(max_size=60), st.text(max_size=60))
def test_choose_filename_is_always_safe(header: str, path: str) -> None:
    out = choose_filename(header, "http://h/" + path, "http://h/")
    assert out
    assert "/" not in out
    assert "\\" not in out
    assert out not in (".", "..")
    assert not out.startswith(".")
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
