"""What the node's own downloads moved and how they ended, counted as it happens.

``DownloadTally`` is the download manager's (``node.downloads``): bytes per kind of link as
they come in, finished downloads by how they ended. The node's collector
(``node.metrics``) renders it on ``/metrics``; the requester of ``swarmget get --hub``
counts with it too and serves no metrics, so nothing here imports the Prometheus client
(``net.tally``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmget.core.byte_sources import SourceKind
from swarmget.core.lifecycle import DownloadState
from swarmget.net.tally import HistogramTally

__all__ = ["DownloadTally"]


@dataclass
class DownloadTally:
    """What the node's own downloads moved and how they ended, counted as it happens."""

    origin_bytes: int = 0  # received from origins (our own connections, a single stream)
    peer_bytes: int = 0  # received from helpers and LAN holders
    #: received per kind of link (``core.byte_sources``; checks' origin bytes too)
    by_source: dict[SourceKind, int] = field(default_factory=lambda: dict.fromkeys(SourceKind, 0))
    durations: HistogramTally = field(default_factory=HistogramTally)

    def received(self, kind: SourceKind, n: int) -> None:
        self.by_source[kind] += n
        if kind is SourceKind.ORIGIN:
            self.origin_bytes += n
        elif kind is not SourceKind.CHECK:
            self.peer_bytes += n

    def finished(self, result: DownloadState, seconds: float) -> None:
        self.durations.observe(result.value, max(seconds, 0.0))
