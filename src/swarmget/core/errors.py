"""The one error tree of swarmget.

Split by who is at fault and what the caller should do about it::

    SwarmgetError
    ├── UsageError                 the user asked for something impossible; nothing was fetched
    │   ├── InvalidURL             not an absolute http(s) URL
    │   ├── InvalidChecksum        --checksum is not ALG:HEX with a known algorithm
    │   ├── InvalidHeader          --header is not "Name: value"
    │   ├── DestinationExists      the output file exists and --force was not given (or it is
    │   │                          not a regular file: never replaced, even with --force)
    │   ├── InvalidDestination     the output name cannot be used (too long for the file system)
    │   ├── DestinationOutside     a node's output path leads out of its download directory
    │   ├── WrongState             the download cannot do that now (pause a finished one,
    │   │                          resume a running one, remove a running one): 409
    │   ├── InvalidSecret          the swarm secret is missing, unreadable, empty or too short
    │   ├── InvalidNodeKey         the node key file is unsafe (owner, mode, symlink) or corrupt
    │   └── MissingExtra           a service's optional dependencies are not installed (the
    │                              hub's or the relay's database: ``pip install 'swarmget[hub]'``)
    ├── SourceError                one source failed one piece of work: retry it or drop it
    │   ├── SourceRetryable        transient (connection reset, timeout, 5xx): try again later
    │   │   └── SourceRateLimited  429/503, possibly with Retry-After (`retry_after` seconds)
    │   ├── SourceBroken           the source answered wrongly (bad Content-Range, short body):
    │   │                          count it against the source, do not trust it blindly
    │   └── RangesIgnored          a range request got the whole file (200): fall back to one
    │                              stream from offset 0
    ├── DownloadError              the download as a whole cannot go on: stop and report
    │   ├── OriginChanged          the file on the server changed under us (validator mismatch)
    │   ├── OriginUnusable         the origin cannot serve this URL (4xx, too many redirects)
    │   │   └── ForbiddenTarget    the URL (or a redirect) leads to an address the policy
    │   │                          forbids: loopback, private, link-local, metadata ...
    │   ├── ChecksumMismatch       the finished file does not match a known digest (data kept)
    │   ├── StorageError           the local disk failed us (full, read-only, permissions)
    │   │   ├── InsufficientStorage    the file cannot fit (free space, the largest file the
    │   │   │   │                      file system or the OS allows): refused before a byte
    │   │   │   │                      is written
    │   │   │   └── FileTooLarge       larger than the configured --max-size
    │   │   └── UntrustedFile      FILE.part or its control file is a link, not a regular
    │   │                          file, another user's or writable by others: not touched
    │   ├── NoSourcesLeft          every source is banned or gone before the file completed
    │   ├── Cancelled              the user cancelled the download
    │   ├── NodeLost               the local node a download was handed to went away (not
    │   │                          running, killed, its connection lost, or its answer
    │   │                          malformed): its partial file is kept for a next run
    │   └── RelayError             talking to the relay failed (seen from a requester)
    │       ├── RelayUnavailable   unreachable, busy, 5xx, or it forgot the fetch: try later
    │       └── RelayRejected      the relay refused our request (secret, clock skew, bad
    │                              request): retrying as is will not help; fix the configuration
    ├── AuthError                  the peer's fault: its request is unsigned, badly signed,
    │   │                          replayed or too far off in time; reject the request (401)
    │   ├── BadIdentity            the node key is missing, does not match the node id, or its
    │   │                          signature is wrong: someone else's id was claimed
    │   ├── ClockSkew              the request's time is outside the window: fix the clocks
    │   ├── ReplayedRequest        this nonce was used already, or the request was signed
    │   │                          before the receiver started (it may have been seen)
    │   ├── SessionUnknown         a session-signed request names a session the receiver
    │   │                          does not hold: sign with the node key, agree on a new one
    │   └── ReplayCacheFull        the sender sent more requests in one window than the
    │                              receiver keeps nonces for: slow down (429)
    └── HubError                   talking to the hub failed (seen from a node)
        ├── HubUnavailable         unreachable, timed out, 5xx or overloaded: back off (Retry-After)
        ├── HubRejected            the hub refused us (secret, clock skew, bad request): retrying
        │                          as is will not help; fix the configuration
        │   └── HubTooOld          the hub does not know this request (a requester-only
        │                          peers query): upgrade the hub
        ├── UnknownNode            the hub does not know this node (restarted with an empty
        │                          registry, or our TTL expired): register again
        └── HubSessionRefused      the hub refused our session key (401): sign with the
                                   node key and agree on a new session

Library exceptions (aiohttp, OSError) are translated at the adapter boundary with
``raise ... from exc`` so that callers only ever catch this tree.
"""

from __future__ import annotations


class SwarmgetError(Exception):
    """Root of every error swarmget raises on purpose."""

    #: A short machine-readable code, stable across releases (used in --json output).
    code: str = "error"
    #: The exit status of ``swarmget get`` failing so (README "Exit codes"): 2 usage, 3 the
    #: download failed, 4 the file changed, 5 checksum mismatch, 6 local storage.
    exit_code: int = 3


# --- the user's fault -------------------------------------------------------------------------


class UsageError(SwarmgetError):
    code = "usage"
    exit_code = 2


class InvalidURL(UsageError):
    code = "invalid_url"


class InvalidChecksum(UsageError):
    code = "invalid_checksum"


class InvalidHeader(UsageError):
    code = "invalid_header"


class DestinationExists(UsageError):
    code = "destination_exists"


class InvalidDestination(UsageError):
    code = "invalid_destination"


class DestinationOutside(UsageError):
    """A node was asked to write outside its download directory (absolute, ``..``, a link
    out of it)."""

    code = "destination_outside"


# --- one source's fault: retry or drop that source ---------------------------------------------


class SourceError(SwarmgetError):
    code = "source"


class SourceRetryable(SourceError):
    code = "source_retryable"


class SourceRateLimited(SourceRetryable):
    """The source asked us to slow down; ``retry_after`` is in seconds (None: not given)."""

    code = "source_rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceBroken(SourceError):
    code = "source_broken"


class RangesIgnored(SourceError):
    code = "ranges_ignored"


# --- the download cannot go on -------------------------------------------------------------------


class DownloadError(SwarmgetError):
    code = "download"


class OriginChanged(DownloadError):
    code = "origin_changed"
    exit_code = 4


class OriginUnusable(DownloadError):
    code = "origin_unusable"


class ChecksumMismatch(DownloadError):
    code = "checksum_mismatch"
    exit_code = 5


class StorageError(DownloadError):
    code = "storage"
    exit_code = 6


class InsufficientStorage(StorageError):
    """The file cannot fit where it should go; nothing was written."""

    code = "insufficient_storage"


class FileTooLarge(InsufficientStorage):
    """The file is larger than the configured limit (``--max-size``); nothing was written."""

    code = "too_large"


class UntrustedFile(StorageError):
    """A file swarmget would resume from or write into is not safely its own (a symbolic
    link, not a regular file, another user's, writable by others, or hard-linked elsewhere):
    it is neither read nor written."""

    code = "untrusted_file"


class NoSourcesLeft(DownloadError):
    code = "no_sources"


class Cancelled(DownloadError):
    code = "cancelled"


class NodeLost(DownloadError):
    """``swarmget get`` handed the download to the local node, and the node went away: it
    is not running, the connection to it was lost (killed, crashed, stopped), or it answered
    with something that is not its API's JSON."""

    code = "node_lost"


# --- added for auth and the hub ----------------------------------------------------------------


class WrongState(UsageError):
    """A download asked to do what its state does not allow (pause a finished one, resume or
    remove a running one): look at its state and ask again."""

    code = "wrong_state"


class InvalidSecret(UsageError):
    """The swarm secret could not be loaded: missing, unreadable, empty or too short."""

    code = "invalid_secret"


class InvalidNodeKey(UsageError):
    """The node's key file cannot be trusted or read: not a regular file of ours, readable
    by others, or not a key. Never replaced silently: it is the node's identity."""

    code = "invalid_node_key"


class MissingExtra(UsageError):
    """A service needs optional dependencies this installation lacks (the hub's and the
    relay's database: SQLAlchemy, aiosqlite, greenlet). ``extra`` names what to install
    (empty when the error came by its code over the wire, which does not carry it)."""

    code = "missing_extra"

    def __init__(self, message: str, *, extra: str = "") -> None:
        super().__init__(message)
        self.extra = extra


class AuthError(SwarmgetError):
    """A request was not signed right (missing, bad, replayed or skewed): reject it."""

    code = "auth"


class BadIdentity(AuthError):
    """The request's node key is missing, is not the key of the node id it claims, or did
    not sign the request: the sender is not who it says it is."""

    code = "bad_identity"


class ClockSkew(AuthError):
    """The request's time is too far from the receiver's clock."""

    code = "clock_skew"


class ReplayedRequest(AuthError):
    """The request was seen before (its nonce is used up), or it was signed before the
    receiver started, when the receiver cannot know whether it saw it."""

    code = "replayed"


class SessionUnknown(AuthError):
    """A request signed with a session key (``core.session_auth``) names a session the
    receiver does not hold (another hub replica, a restarted hub, or one it dropped): sign
    with the node key, and agree on a new session."""

    code = "session_unknown"


class ReplayCacheFull(AuthError):
    """The sender used up its share of the receiver's replay cache within one window;
    only that sender is refused, until its entries expire."""

    code = "replay_cache_full"


class HubError(SwarmgetError):
    """Talking to the hub failed; ``status`` is the HTTP status when there was one."""

    code = "hub"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HubUnavailable(HubError):
    """``retry_after``: seconds the hub asked us to wait (None: it did not say)."""

    code = "hub_unavailable"

    def __init__(
        self, message: str, status: int | None = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class HubRejected(HubError):
    code = "hub_rejected"


class HubTooOld(HubRejected):
    """The hub answered a requester-only peers query as an older hub does (it does not know
    the query): asking again will not help; the hub must be upgraded."""

    code = "hub_too_old"


class UnknownNode(HubError):
    code = "unknown_node"


class HubSessionRefused(HubError):
    """The hub refused a request signed with our session key (401: it does not hold the
    session, or the signature failed): the client signs with the node key instead and
    agrees on a new session (``swarmget.net.hub_client``)."""

    code = "hub_session_refused"


class ContentError(SourceError):
    """Fetch once per LAN (#15): a LAN holder could not serve a content it was asked for."""

    code = "content"


class ContentNotHeld(ContentError):
    """The holder has not verified (all of) the range asked for."""

    code = "content_not_held"


class ContentKeyMismatch(ContentError):
    """The key asked for is not the content the holder has under that name."""

    code = "content_key_mismatch"


class ContentNotShareable(ContentError):
    """The content has no key strong enough to share it (no size, or no validator)."""

    code = "content_not_shareable"


class LanAllowanceUsedUp(ContentError):
    """The holder served its daily LAN allowance (``--lan-daily-quota``): take those bytes
    elsewhere (another holder, or the origin). ``retry_after``: seconds until its next day."""

    code = "lan_quota"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotAContentMember(HubError):
    """The hub's content index does not know this node as a member of that content
    (it expired or the hub restarted): join again."""

    code = "not_a_content_member"


class RelayError(DownloadError):
    """Talking to the relay failed (seen from a requester that fetches through it)."""

    code = "relay"


class RelayUnavailable(RelayError):
    code = "relay_unavailable"


class RelayRejected(RelayError):
    code = "relay_rejected"


class ForbiddenTarget(OriginUnusable):
    """An outgoing connection was refused by the address policy (``core.addresses``): the
    target is not a globally routable address and is not on the allow-list."""

    code = "forbidden_target"
