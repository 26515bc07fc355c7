"""Whether a download resumes what an earlier run left next to its destination: decided once.

``decide_resume`` is the one place that judges the control file an earlier run left (see
``swarmget.storage``). It is pure: storage reads the control file once (``Stored``), looks at
the data file's size, and applies the ``Verdict``:

* ``Resume``: the same key (URL, size, validators) and ranges that fit the data file: keep them;
* ``StartFresh``: nothing to resume (``NEW``), a control file for other bytes
  (``RESTARTED_CHANGED``), or one that cannot be trusted (``RESTARTED_UNUSABLE``): drop the
  old data; ``reason`` is set when it is of the same URL and the file changed on the server
  (allowed by ``restart_if_changed``);
* ``Refuse``: the file changed on the server since the partial download of the same URL and
  the user did not say ``restart_if_changed``: touch nothing and raise ``error``.

Unknown size (``ResumeKey.size`` None, one stream) never resumes: there is nothing to tell
whether the origin still serves the same bytes, so it always starts fresh, and a control file
for another URL (another download that chose the same name) is silently replaced.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from swarmget.core.errors import DestinationExists, OriginChanged
from swarmget.core.ranges import RangeSet

__all__ = [
    "Recorded",
    "Refuse",
    "Resume",
    "ResumeKey",
    "ResumeState",
    "StartFresh",
    "Stored",
    "Unrecorded",
    "Verdict",
    "decide_resume",
]


class ResumeState(enum.StrEnum):
    """What ``open_part_file`` found next to the destination."""

    NEW = "new"  # nothing to resume: start from zero
    RESUMED = "resumed"  # same key, data file intact: ``written`` comes from the control file
    RESTARTED_CHANGED = "restarted_changed"  # a control file for another key (URL, size,
    # validator): the file changed on the server, the old data was dropped
    RESTARTED_UNUSABLE = "restarted_unusable"  # a control file we cannot trust (unreadable,
    # or the data file is missing or has the wrong size): the old data was dropped


class ChangedSincePartial(OriginChanged):
    """The file changed on the server since an earlier run left its partial data (found
    when resuming): ``origin_changed`` on the wire; its message already says what to do."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeKey:
    """Identifies the bytes being downloaded, so that a later run resumes only the same file.

    Resuming requires equal ``url``, ``size`` and validators. ``final_url`` (after redirects)
    is recorded for diagnostics but not compared: mirrors behind a redirector may change. With
    neither validator known, only the size protects a resume against a changed file.
    """

    url: str
    final_url: str
    size: int | None
    validator_etag: str | None = None
    validator_last_modified: str | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 0:
            raise ValueError(f"negative size {self.size}")

    def allows_resume_from(self, stored: ResumeKey) -> bool:
        """True when data recorded under ``stored`` is valid for this key."""
        return self.size is not None and self._identity() == stored._identity()

    def _identity(self) -> tuple[object, ...]:
        return (self.url, self.size, self.validator_etag, self.validator_last_modified)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "final_url": self.final_url,
            "size": self.size,
            "etag": self.validator_etag,
            "last_modified": self.validator_last_modified,
        }

    @classmethod
    def from_json(cls, obj: Any) -> ResumeKey:
        """Parse ``to_json`` output; ValueError (or TypeError) if it is malformed."""
        fields = (obj["url"], obj["final_url"], obj["etag"], obj["last_modified"])
        if not all(isinstance(f, str | None) for f in fields) or not isinstance(obj["size"], int):
            raise ValueError("malformed resume key")
        return cls(
            url=obj["url"],
            final_url=obj["final_url"],
            size=obj["size"],
            validator_etag=obj["etag"],
            validator_last_modified=obj["last_modified"],
        )


# --- the facts --------------------------------------------------------------------------------


class Unrecorded(enum.Enum):
    """No usable control file: none at all, or one that cannot be read or trusted."""

    MISSING = "missing"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A control file's key and the ranges it vouches for (this boot's or synced ones)."""

    key: ResumeKey
    written: RangeSet


Stored = Recorded | Unrecorded


# --- the verdicts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    """Keep the data file: ``written`` is on disk already."""

    written: RangeSet
    state: ResumeState = ResumeState.RESUMED


@dataclass(frozen=True, slots=True)
class StartFresh:
    """Empty the control file, then the data file, and start from zero. ``reason`` (for a
    ``Restarted`` event) is set when data of the same URL is dropped because the file
    changed on the server (allowed by ``restart_if_changed``)."""

    state: ResumeState
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Refuse:
    """Touch nothing: the partial data is of a changed file, or of another URL, and the
    user did not say to start over."""

    error: OriginChanged | DestinationExists


Verdict = Resume | StartFresh | Refuse

CHANGED_REASON = "the file changed since the partial download"


def decide_resume(
    new: ResumeKey,
    stored: Stored,
    *,
    data_size: int,
    dest: PurePath,
    restart_if_changed: bool = True,
    force: bool = False,
) -> Verdict:
    """What to do with what an earlier run left at ``dest``; see the module docstring.

    ``data_size`` is the data file's size now (0 when it was just created).
    ``restart_if_changed=False`` refuses to drop data of the same URL whose size or
    validators changed; True (storage's own default) drops it. Data of another URL is
    dropped only with ``force`` (a user's earlier download, not to be lost by a typo).
    """
    if stored is Unrecorded.MISSING:
        return StartFresh(ResumeState.NEW)
    if stored is Unrecorded.UNREADABLE:
        return StartFresh(ResumeState.RESTARTED_UNUSABLE)
    assert isinstance(stored, Recorded)
    if not new.allows_resume_from(stored.key):
        if stored.key.url != new.url and stored.written and not force:
            return Refuse(
                DestinationExists(
                    f"{dest.name}.part holds a partial download of another URL "
                    f"({stored.key.url}); re-run with --force to discard it, or choose "
                    "another -o"
                )
            )
        if new.size is None or stored.key.url != new.url:
            return StartFresh(ResumeState.RESTARTED_CHANGED)
        if not restart_if_changed:
            return Refuse(
                ChangedSincePartial(
                    f"the file changed on the server since the partial download of {dest.name} "
                    f"(size/validator differ); re-run with --restart-if-changed to start over "
                    f"(the partial data is kept in {dest}.part)"
                )
            )
        return StartFresh(ResumeState.RESTARTED_CHANGED, reason=CHANGED_REASON)
    if not stored.written:
        return StartFresh(ResumeState.NEW)
    bounds = stored.written.bounds()
    if data_size != new.size or bounds is None or bounds.end > data_size:
        return StartFresh(ResumeState.RESTARTED_UNUSABLE)
    return Resume(stored.written)
