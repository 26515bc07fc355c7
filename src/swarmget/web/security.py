"""Who may use the portal: login links, sessions, CSRF tokens, Host and Origin checks.

The portal is a browser front end to the node's local user API, so it needs what a bearer
token cannot give a browser, and must refuse what a browser can be tricked into sending:

* **Login.** ``login_link()`` mints a one-time secret for ``/portal/login?token=...``, valid
  once, for ``LOGIN_LINK_TTL`` (5 minutes). A link is a credential, so it goes to a terminal
  only, never to a log or the journal: the node prints one on its stderr when that is a
  terminal, and ``swarmget portal`` asks the node for a fresh one (on its Unix socket, with
  the API token) and prints it. The login page also
  takes the API token itself (the ``api-token`` file in the state directory), pasted into a
  form, so that a link is never needed. Either one opens a **session**: a random id in an
  ``HttpOnly; SameSite=Strict`` cookie (never the API token), kept in memory only: a node
  restart logs everybody out.
* **CSRF.** Every session has its own random token; every form carries it in a hidden field
  and every POST is refused (403) without the right one.
* **DNS rebinding and cross-site requests.** A request whose ``Host`` is not one of the
  portal's own names (the bound ``host:port``, ``localhost:port``, ``127.0.0.1:port``,
  ``[::1]:port``) is refused, so a page on the LAN cannot rebind a name of its own to
  127.0.0.1 and read the portal. A state-changing request must also carry an ``Origin`` (or,
  failing that, a ``Referer``) of one of those names (RFC 6454 §7; OWASP's "verifying origin
  with standard headers"), over http (and https where the portal has TLS or a proxy).
* **Remote access** (``web.remote``) widens the list, never the rule: the administrator's
  allowed hosts (``name:port`` for that port only, a bare ``name`` for any port: an SSH
  tunnel on another local port, a reverse proxy's public name) join the portal's own.

Pure bookkeeping: the clock comes in as ``now``.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

LOGIN_LINK_TTL = 300.0  # seconds a one-time login link stays valid
SESSION_IDLE = 7 * 24 * 3600.0  # a session unused for this long is forgotten
MAX_SESSIONS = 64  # the oldest is dropped beyond this
MAX_LOGIN_LINKS = 16
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Session:
    id: str
    csrf: str
    last_used: float


class PortalAuth:
    """Login links and sessions of one portal (in memory)."""

    def __init__(self, api_token: str) -> None:
        self._api_token = api_token
        self._links: OrderedDict[str, float] = OrderedDict()  # secret -> minted at
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def login_link(self, now: float) -> str:
        """A new one-time login secret (for ``/portal/login?token=``)."""
        secret = secrets.token_urlsafe(32)
        self._links[secret] = now
        while len(self._links) > MAX_LOGIN_LINKS:
            self._links.popitem(last=False)
        return secret

    def redeem_link(self, secret: str, now: float) -> Session | None:
        """Open a session for a login-link secret; each secret works once."""
        for known in list(self._links):
            if hmac.compare_digest(known.encode(), secret.encode()):
                minted = self._links.pop(known)
                return self._open(now) if now - minted <= LOGIN_LINK_TTL else None
        return None

    def login_with_token(self, token: str, now: float) -> Session | None:
        """Open a session for the node's API token (pasted on the login page)."""
        if token and hmac.compare_digest(token.strip().encode(), self._api_token.encode()):
            return self._open(now)
        return None

    def session(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id, touched; None if unknown or expired."""
        if not session_id:
            return None
        found = self._sessions.get(session_id)
        if found is None:
            return None
        if now - found.last_used > SESSION_IDLE:
            del self._sessions[session_id]
            return None
        found.last_used = now
        self._sessions.move_to_end(session_id)
        return found

    def logout(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _open(self, now: float) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), last_used=now
        )
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())


ANY_PORT = ":*"  # an allowed name followed by this: that name on any port (or none)


def own_hosts(bound_host: str, port: int) -> frozenset[str]:
    """The ``Host`` header values that name this portal."""
    host = f"[{bound_host}]" if ":" in bound_host else bound_host
    names = {host, "localhost", "127.0.0.1", "[::1]"}
    out = {f"{name}:{port}".lower() for name in names}
    if port in (80, 443):  # a browser leaves the default port out of Host and Origin
        out |= {name.lower() for name in names}
    return frozenset(out)


def allowed_hosts(entries: tuple[str, ...]) -> frozenset[str]:
    """The configured extra names: ``name:port`` as is, a bare ``name`` (or ``[v6]``) for any
    port. ``ValueError`` for an entry that is no host name (a scheme, a path, a space ...)."""
    out: set[str] = set()
    for entry in entries:
        text = entry.strip().lower()
        name, port = _split_host(text)
        if not name or any(c in name for c in "/@?# \t,") or (port and not port.isdigit()):
            raise ValueError(f"not a host name or host:port: {entry!r}")
        out.add(text if port else name + ANY_PORT)
    return frozenset(out)


def _split_host(text: str) -> tuple[str, str]:
    """``name:port`` → (name, port); ``[v6]:port`` → ([v6], port); no port: (text, "")."""
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end >= 0 else ""
        return text[: end + 1], rest[1:] if rest.startswith(":") else ""
    name, _, port = text.partition(":")
    return name, port


def host_ok(host_header: str | None, hosts: frozenset[str]) -> bool:
    if host_header is None:
        return False
    host = host_header.lower()
    return host in hosts or _split_host(host)[0] + ANY_PORT in hosts


def origin_ok(
    origin: str | None,
    referer: str | None,
    hosts: frozenset[str],
    schemes: frozenset[str] = frozenset({"http"}),
) -> bool:
    """Whether a state-changing request comes from one of our own pages.

    ``Origin`` decides when present (``null`` is refused); without it the ``Referer``'s
    scheme and host must be ours; with neither the request is refused. ``schemes``: the
    portal's (``https`` too when it has TLS or sits behind a proxy).
    """
    if origin is not None:
        return _is_own(origin, hosts, schemes, whole=True)
    if referer is not None:
        return _is_own(referer, hosts, schemes, whole=False)
    return False


def _is_own(url: str, hosts: frozenset[str], schemes: frozenset[str], *, whole: bool) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in schemes or not host_ok(parts.netloc, hosts):
        return False
    # an Origin is scheme://host:port and nothing else (RFC 6454 §6.2)
    return not whole or (parts.path == "" and not parts.query and not parts.fragment)
