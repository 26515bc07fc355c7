"""Choosing a safe local file name for a download.

The name comes from, in order of preference: the ``Content-Disposition`` of the final
response (RFC 6266), the last path segment of the final URL after redirects, and the last
path segment of the URL the user gave. Every candidate is untrusted input from the network,
so ``sanitize_filename`` reduces it to one plain path component:

* only the last component survives: ``/`` and ``\\`` both separate directories;
* control characters (C0, DEL, C1), NUL, lone surrogates and bidirectional overrides are
  removed (the latter make ``evil\\u202etxt.exe`` display as ``evilexe.txt``);
* the characters Windows reserves (``<>:"|?*``) become ``_``, and so do device names such
  as ``CON`` or ``lpt1.txt`` (by prefixing ``_``);
* surrounding whitespace and dots are stripped: trailing ones because Windows drops them
  silently, leading ones because a server must not choose a hidden file (``.bashrc``
  becomes ``bashrc``, ``.`` and ``..`` become nothing);
* the result fits in ``MAX_NAME_BYTES`` (241) bytes of UTF-8, keeping a short extension,
  so that the longest name a download uses next to it, ``NAME.part.json.tmp``, fits in
  the usual NAME_MAX of 255 bytes;
* if nothing usable remains, the name is ``"download"``.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, unquote_to_bytes, urlsplit

__all__ = [
    "FALLBACK_NAME",
    "MAX_NAME_BYTES",
    "WORK_SUFFIX",
    "choose_filename",
    "filename_from_content_disposition",
    "filename_from_url",
    "sanitize_filename",
]

FALLBACK_NAME = "download"
NAME_MAX = 255  # bytes in one path component on the usual Linux file systems
WORK_SUFFIX = ".part.json.tmp"  # the longest suffix storage adds next to a download
MAX_NAME_BYTES = NAME_MAX - len(WORK_SUFFIX)
_MAX_EXTENSION_CHARS = 16

_RESERVED = str.maketrans({c: "_" for c in '<>:"|?*'})
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)

# RFC 9110 §5.6.2 token and §5.6.4 quoted-string, as used by RFC 6266 §4.1 parameters.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*({_QUOTED}|[^;]*)\s*(?:;|$)", re.DOTALL)
# RFC 8187 §3.2.1: ext-value = charset "'" [ language ] "'" value-chars
_EXT_VALUE = re.compile(r"([!#$%&+^_`{}~0-9A-Za-z-]+)'[^']*'(.*)", re.DOTALL)
_EXT_CHARSETS = frozenset({"utf-8", "iso-8859-1"})
_EDGES = re.compile(r"^[\s.]+|[\s.]+$")


# --- Content-Disposition (RFC 6266) --------------------------------------------------------------


def filename_from_content_disposition(value: str) -> str | None:
    """The file name a ``Content-Disposition`` value suggests, unsanitised, or None.

    ``filename*`` (RFC 6266 §4.3, RFC 8187 encoding) wins over ``filename``; a
    ``filename*`` in a charset we cannot decode is ignored in favour of ``filename``.
    The disposition type (``attachment``/``inline``) does not matter to a downloader.
    """
    params = _disposition_params(value)
    extended = params.get("filename*")
    if extended is not None:
        decoded = _decode_ext_value(_unquote(extended))
        if decoded:
            return decoded
    plain = params.get("filename")
    return _unquote(plain) if plain else None


def _disposition_params(value: str) -> dict[str, str]:
    """Lower-cased parameter names to raw values; the first occurrence of a name wins."""
    _, sep, rest = value.partition(";")
    if not sep:  # tolerate a bare "filename=x" without a disposition type
        rest = value if "=" in value else ""
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None:  # skip a malformed parameter up to the next ";"
            nxt = rest.find(";", pos)
            pos = len(rest) if nxt < 0 else nxt + 1
            continue
        params.setdefault(match.group(1).lower(), match.group(2).strip())
        pos = match.end()
    return params


def _unquote(value: str) -> str:
    """Undo a quoted-string (RFC 9110 §5.6.4); tokens are returned as they are."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.DOTALL)
    return value


def _decode_ext_value(value: str) -> str | None:
    """Decode an RFC 8187 ``charset'lang'pct-encoded`` value; None when it is not one."""
    match = _EXT_VALUE.fullmatch(value)
    if match is None or match.group(1).lower() not in _EXT_CHARSETS:
        return None
    try:
        return unquote_to_bytes(match.group(2)).decode(match.group(1).lower())
    except UnicodeDecodeError:
        return None


# --- URL -----------------------------------------------------------------------------------------


def filename_from_url(url: str) -> str | None:
    """The percent-decoded last segment of the URL's path (unsanitised), or None if empty.

    The query and fragment never contribute (``/get.php?f=x`` gives ``get.php``).
    Undecodable percent-escapes become U+FFFD rather than failing.
    """
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    segment = path.rsplit("/", 1)[-1]
    return unquote(segment, errors="replace") or None


# --- sanitising ----------------------------------------------------------------------------------


def sanitize_filename(name: str) -> str:
    """A single safe path component derived from ``name`` (see the module docstring).

    Never contains ``/``, ``\\`` or NUL, is never empty, never starts with a dot, and is at
    most ``MAX_NAME_BYTES`` (241) bytes of UTF-8. Idempotent: sanitising a sanitised name
    changes nothing.
    """
    return _clean(name) or FALLBACK_NAME


def choose_filename(content_disposition: str | None, final_url: str, original_url: str) -> str:
    """The sanitised name to save as: the first usable of Content-Disposition, the final
    URL's last segment and the original URL's last segment, else ``"download"``."""
    candidates = [
        filename_from_content_disposition(content_disposition) if content_disposition else None,
        filename_from_url(final_url),
        filename_from_url(original_url),
    ]
    for candidate in candidates:
        cleaned = _clean(candidate) if candidate else None
        if cleaned:
            return cleaned
    return FALLBACK_NAME


def _clean(name: str) -> str | None:
    """The sanitised name, or None when nothing usable remains."""
    parts = [p for p in re.split(r"[/\\]", name) if p]
    if not parts:
        return None
    cleaned = _strip_edges(_drop_invisible(parts[-1]).translate(_RESERVED))
    if not cleaned:
        return None
    cleaned = _strip_edges(_truncate(_avoid_device_name(cleaned)))
    return cleaned or None


def _drop_invisible(name: str) -> str:
    return "".join(
        ch
        for ch in name
        if unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI_CONTROLS
    )


def _strip_edges(name: str) -> str:
    """Strip surrounding whitespace and dots: no hidden files, no "." or ".."."""
    return _EDGES.sub("", name)


def _avoid_device_name(name: str) -> str:
    stem = name.split(".", 1)[0].rstrip(" ").lower()
    return "_" + name if stem in _WINDOWS_DEVICES else name


def _truncate(name: str) -> str:
    """Cut ``name`` to MAX_NAME_BYTES of UTF-8 on a character boundary, keeping a short
    extension (``.tar.gz`` keeps ``.gz``): ``NAME.part.json.tmp`` must fit in NAME_MAX."""
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXTENSION_CHARS:
        stem, ext = name, ""
    suffix = "." + ext if ext else ""
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    head = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return head + suffix
