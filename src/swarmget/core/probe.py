"""The probe of an origin as a machine: fed answers, it says what to send next.

Theory of operation. Probing finds out what a URL serves and pins it (``OriginInfo``): the
final URL after redirects, the size, the validator, whether ranges work, the file name and
any ``Repr-Digest``. The machine sends nothing and reads no clock: the adapter
(``net.origin.OriginClient.probe``) performs each action and feeds the answer back, with
the time. Like h11's connection, it is driven by three kinds of input:

* ``start()`` -> the first action (a ``Fetch`` of HEAD, or ``Failed`` for a bad URL);
* ``on_answer(status, headers, now_epoch=...)`` -> the next action, for the answer to the
  last ``Fetch`` (its head only: the body is never read);
* ``on_error(error)`` -> ``Failed``: the request itself failed (no retry here; the caller's
  scheduler decides what to do with a retryable error).

Actions: ``Fetch(method, url, headers)`` (send this, feed me the answer), ``Done(info,
first)``, ``Failed(error)`` (an exception of the error tree, to raise).

With ``first_range=N`` (issue #14: the probe is the download's first range, one round trip
saved) the machine starts in FIRST: ``GET`` with ``Range: bytes=0-(N-1)``. A plain 206 that
delivers exactly the start of a file of known size (``core.http.facts_from_first_range``)
answers the probe, and ``Done.first`` names the bytes its body holds, for the caller to keep
(the body is unread; the caller reads it as the first range of the download, or closes
it). Any other answer (200, 416, an error status, a content-coding, a Content-Range other
than asked ...) is as if the probe had not been tried: HEAD on the same URL, and the table
below from there, so every server that does not answer so keeps the rules and errors of the
HEAD probe. A redirect is followed with the same GET.

==========  =======================================  ===========  ===========================
state       answer                                   next state   action
==========  =======================================  ===========  ===========================
FIRST       a redirect (as for HEAD)                 FIRST        Fetch GET bytes=0-(N-1) of
                                                                  the target
FIRST       206 of exactly the first min(N, size)    DONE         Done(first=those bytes)
            bytes of a file of known size
FIRST       anything else                            HEAD         Fetch HEAD of the current
                                                                  URL
HEAD        301/302/303/307/308 with a usable,       HEAD         Fetch HEAD of the target
            unvisited Location, within the limit
HEAD        a usable 200 (``facts_from_head``)       DONE         Done
HEAD        anything HEAD cannot tell from           RANGE        Fetch GET bytes=0-0 of the
            (405, 403, 200 without length ...)                    current URL
RANGE       a redirect (as for HEAD)                 RANGE        Fetch GET bytes=0-0 of the
                                                                  target
RANGE       206/200/416 */0 (``facts_from_range_     DONE         Done
            probe``)
any         an error of ``core.http``'s rules, a     FAILED       Failed(error)
            bad redirect, or ``on_error``
==========  =======================================  ===========  ===========================

Redirect rules (``core.http.redirect_target`` and ``RedirectChain``): only the five codes
above redirect; a Location is resolved against the current URL (it may be relative, RFC
9110 §10.2.2), its fragment dropped, and must be an http(s) URL without credentials
(``OriginUnusable`` otherwise, e.g. for ``ftp://``); a URL visited before is a loop; more
than ``max_redirects`` hops is ``OriginUnusable``. Either scheme may redirect to the other.
The method stays what it was (a HEAD is followed with HEAD, the range probe with GET).
Credentials are the adapter's concern (``core.http.forwardable_headers``, against
``Probe.url``, the URL the user named).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarmget.core.digests import Digest
from swarmget.core.errors import SwarmgetError
from swarmget.core.filenames import choose_filename
from swarmget.core.http import (
    ProbeFacts,
    RedirectChain,
    Validator,
    facts_from_first_range,
    facts_from_head,
    facts_from_range_probe,
    redirect_target,
)
from swarmget.core.ranges import ByteRange
from swarmget.core.urls import validate_url

__all__ = [
    "RANGE_PROBE",
    "Action",
    "Done",
    "Failed",
    "Fetch",
    "OriginInfo",
    "Probe",
    "ProbeState",
]

#: The extra request field of the range probe.
RANGE_PROBE = (("Range", "bytes=0-0"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginInfo:
    """What a probe pinned. ``size`` is None when the server would not say (then only
    ``open_stream`` can fetch the file); ``filename`` is already sanitised."""

    url: str
    final_url: str
    size: int | None
    validator: Validator | None
    accepts_ranges: bool
    filename: str
    digests: tuple[Digest, ...] = ()
    #: the probe answer's ``Date`` field (for ``ContentKey.from_origin_info``); a fact of
    #: that one answer, not of the representation: not compared
    date: str | None = field(default=None, compare=False)


class ProbeState(enum.Enum):
    NEW = "new"
    FIRST = "first"  # a GET bytes=0-(N-1) is out (``first_range``)
    HEAD = "head"  # a HEAD is out
    RANGE = "range"  # a GET bytes=0-0 is out
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch:
    """Send ``method url`` with ``headers`` (besides the caller's own) and feed the answer's
    status and head to ``on_answer``."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Done:
    info: OriginInfo
    #: the bytes of the file the last answer's (unread) body holds: set only when the probe
    #: was a first range (``first_range``) answered with exactly them
    first: ByteRange | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    error: SwarmgetError


Action = Fetch | Done | Failed


class Probe:
    """One probe of ``url`` (see the module docstring). Misuse (feeding an answer when no
    request is out) is a ``RuntimeError``."""

    def __init__(
        self, url: str, *, max_redirects: int = 10, first_range: int | None = None
    ) -> None:
        if first_range is not None and first_range < 1:
            raise ValueError("first_range must be >= 1")
        self.url = url
        self.max_redirects = max_redirects
        self.first_range = first_range
        self.state = ProbeState.NEW
        self._chain: RedirectChain | None = None

    @property
    def current(self) -> str:
        """The URL of the request that is out (the final URL once done)."""
        return self._chain.current if self._chain is not None else self.url

    def start(self) -> Fetch | Failed:
        self._expect(ProbeState.NEW)
        try:
            self.url = validate_url(self.url)
        except SwarmgetError as exc:
            return self._fail(exc)
        self._chain = RedirectChain(self.url, self.max_redirects)
        self.state = ProbeState.HEAD if self.first_range is None else ProbeState.FIRST
        return self._fetch()

    def on_answer(self, status: int, headers: Mapping[str, str], *, now_epoch: float) -> Action:
        """The answer to the ``Fetch`` that is out: its status and head fields."""
        self._expect(ProbeState.FIRST, ProbeState.HEAD, ProbeState.RANGE)
        assert self._chain is not None
        try:
            target = redirect_target(self._chain.current, status, headers)
            if target is not None:
                self._chain.follow(target)
                return self._fetch()
            if self.state is ProbeState.FIRST:
                return self._first_answered(status, headers)
            facts: ProbeFacts | None
            if self.state is ProbeState.HEAD:
                facts = facts_from_head(status, headers, now_epoch=now_epoch)
            else:
                facts = facts_from_range_probe(status, headers, now_epoch=now_epoch)
        except SwarmgetError as exc:
            return self._fail(exc)
        if facts is None:  # HEAD could not tell: ask for the first byte instead
            self.state = ProbeState.RANGE
            return self._fetch()
        self.state = ProbeState.DONE
        return Done(self._info(facts))

    def on_error(self, error: SwarmgetError) -> Failed:
        """The request that is out failed (connect, timeout, a refused address ...)."""
        self._expect(ProbeState.FIRST, ProbeState.HEAD, ProbeState.RANGE)
        return self._fail(error)

    def _first_answered(self, status: int, headers: Mapping[str, str]) -> Action:
        assert self.first_range is not None
        found = facts_from_first_range(status, headers, self.first_range)
        if found is None:  # not the answer hoped for: probe as without first_range
            self.state = ProbeState.HEAD
            return self._fetch()
        facts, first = found
        self.state = ProbeState.DONE
        return Done(self._info(facts), first)

    def _fetch(self) -> Fetch:
        if self.state is ProbeState.FIRST:
            assert self.first_range is not None
            spec = ByteRange(0, self.first_range).http_spec()
            return Fetch(method="GET", url=self.current, headers=(("Range", spec),))
        if self.state is ProbeState.HEAD:
            return Fetch(method="HEAD", url=self.current)
        return Fetch(method="GET", url=self.current, headers=RANGE_PROBE)

    def _fail(self, error: SwarmgetError) -> Failed:
        self.state = ProbeState.FAILED
        return Failed(error)

    def _expect(self, *states: ProbeState) -> None:
        if self.state not in states:
            raise RuntimeError(
                f"probe is {self.state.value}, not {' or '.join(s.value for s in states)}"
            )

    def _info(self, facts: ProbeFacts) -> OriginInfo:
        final_url = self.current
        return OriginInfo(
            url=self.url,
            final_url=final_url,
            size=facts.size,
            validator=facts.validator,
            accepts_ranges=facts.accepts_ranges,
            filename=choose_filename(facts.content_disposition, final_url, self.url),
            digests=facts.digests,
            date=facts.date,
        )
