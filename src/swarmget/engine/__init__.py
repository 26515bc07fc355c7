"""The download engine: one URL to one verified file, over the origin and helper sources.

Shared as it is by ``swarmget get`` (``run/``), the node's downloads (``node/``) and the
relay (``relay/``); it builds on ``core``, ``storage`` and ``net`` and knows none of them.
See ``download.py`` for how a download runs.
"""

from swarmget.engine.download import (
    DEFAULT_VERIFY_SAMPLE,
    SAMPLE_MIN_WINDOW,
    Download,
    DownloadProgress,
    DownloadResult,
    DownloadSpec,
    OriginSource,
    RangeSource,
    Stage,
    sample_window,
)

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
    "sample_window",
]
