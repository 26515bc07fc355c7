"""The download engine: one URL to one verified file, over the origin and helper sources.

Shared as it is by ``swarmget get`` (``run/``), the node's downloads (``node/``) and the
relay (``relay/``); it builds on ``core``, ``storage`` and ``net`` and knows none of them.

  spec.py           what is asked (DownloadSpec), progress snapshots, the result
  sources.py        RangeSource (anything that streams byte ranges) and OriginSource
  context.py        what one download's parts share: clock, pinned file, stage, events
  download.py       Download: probe, destination, resume, single stream or segmented
  single_stream.py  one GET from offset 0 (no ranges, or no size)
  segmented.py      SegmentedRun: scheduler + part file + task group, streams and checks
  streams.py        one lease's stream into the part file (and what it tells its run)
  writer.py         batched pwritev of a stream's claimed bytes
  refetch.py        which bytes lost leases gave back (told as ``Refetched`` events)
  checks.py         helper bytes checked: manifest pieces, streams sampled against the origin
  verify.py         the whole-file digests and the verification report
  sharing.py        fetch once per LAN (#15): the ports (content index, holders, holdings)
  group.py          GroupFetch: a download as a member of its content's group (§4–§6)

Each name is imported from its module when first used (PEP 562): ``spec``'s data types
(what the CLI reads back from a node's answer) do not bring in the machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarmget.core.verification import DEFAULT_VERIFY_SAMPLE
    from swarmget.engine.checks import SAMPLE_MIN_WINDOW, sample_window
    from swarmget.engine.download import Download
    from swarmget.engine.sources import OriginSource, RangeSource
    from swarmget.engine.spec import (
        DownloadProgress,
        DownloadResult,
        DownloadSpec,
        Stage,
        Timeline,
    )

_HOMES = {
    "DEFAULT_VERIFY_SAMPLE": "swarmget.core.verification",
    "SAMPLE_MIN_WINDOW": "swarmget.engine.checks",
    "sample_window": "swarmget.engine.checks",
    "Download": "swarmget.engine.download",
    "OriginSource": "swarmget.engine.sources",
    "RangeSource": "swarmget.engine.sources",
    "DownloadProgress": "swarmget.engine.spec",
    "DownloadResult": "swarmget.engine.spec",
    "DownloadSpec": "swarmget.engine.spec",
    "Stage": "swarmget.engine.spec",
    "Timeline": "swarmget.engine.spec",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "DEFAULT_VERIFY_SAMPLE",
    "SAMPLE_MIN_WINDOW",
    "Download",
    "DownloadProgress",
    "DownloadResult",
    "DownloadSpec",
    "OriginSource",
    "RangeSource",
    "Stage",
    "Timeline",
    "sample_window",
]
