"""What the portal's pages show, computed from the user API's JSON (pure functions).

Input is what ``describe()`` returns for a download (the same JSON the user API serves) and,
for a running download, a snapshot of the scheduler's leases (``LeaseView``); output is small
frozen records the templates lay out. Nothing here does I/O or reads the clock. The
download's events arrive as JSON and are read back into the typed events of ``core.events``;
everything here reads their fields (no text is parsed back).

    common.py        names, ranges as people read them, the typed events of a download
    downloads.py     the downloads list (``DownloadRow``)
    details.py       the details page (``DetailsView``): summary, sources, timeline
    piecemap.py      its piece map: blocks per source, in flight, re-fetched ranges
    verification.py  its verification panel
    peers.py         the peers page (``PeerRow``)
    traffic.py       the overview's bytes per day and saved figures (``TrafficView``)
    sharing.py       bytes by kind of source, what fetch once per LAN did (``SharingView``)

The names the pages use are importable from this package.
"""

from __future__ import annotations

from swarmget.web.views.common import PALETTE_SIZE, display_name, human_range, read_events
from swarmget.web.views.details import (
    KIND_LABELS,
    STALL_HINT,
    TIMELINE_LIMIT,
    DetailsView,
    SourceRow,
    TimelineEntry,
    details_view,
    source_state,
)
from swarmget.web.views.downloads import DownloadRow, download_row
from swarmget.web.views.peers import PeerRow, peer_row, self_row
from swarmget.web.views.piecemap import Block, LeaseView, refetched_ranges
from swarmget.web.views.traffic import TrafficView, speedup_text, traffic_view
from swarmget.web.views.verification import Verification, verification

__all__ = [
    "KIND_LABELS",
    "PALETTE_SIZE",
    "STALL_HINT",
    "TIMELINE_LIMIT",
    "Block",
    "DetailsView",
    "DownloadRow",
    "LeaseView",
    "PeerRow",
    "SourceRow",
    "TimelineEntry",
    "TrafficView",
    "Verification",
    "details_view",
    "speedup_text",
    "traffic_view",
    "display_name",
    "download_row",
    "human_range",
    "peer_row",
    "read_events",
    "refetched_ranges",
    "self_row",
    "source_state",
    "verification",
]
