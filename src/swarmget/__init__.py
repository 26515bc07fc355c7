"""swarmget: download one large file faster by splitting it across the machines of a LAN.

The public API (``swarmget.api``)::

    import swarmget

    result = swarmget.download("http://example.org/big.iso", "big.iso",
                               checksum="sha256:...", progress=print)

``download``, ``download_async`` and the error types are imported on first use (PEP 562
``__getattr__``): ``import swarmget`` alone stays as cheap as it was, for the CLI's start-up.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: importing typing costs a plain `get` ~4 ms, #14)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from swarmget.api import (
        ChecksumMismatch,
        DownloadError,
        DownloadProgress,
        DownloadResult,
        OriginChanged,
        ProgressCallback,
        StorageError,
        SwarmgetError,
        UsageError,
        download,
        download_async,
    )

__all__ = [
    "ChecksumMismatch",
    "DownloadError",
    "DownloadProgress",
    "DownloadResult",
    "OriginChanged",
    "ProgressCallback",
    "StorageError",
    "SwarmgetError",
    "UsageError",
    "__version__",
    "download",
    "download_async",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from swarmget import api

        return getattr(api, name)
    raise AttributeError(f"module 'swarmget' has no attribute {name!r}")
