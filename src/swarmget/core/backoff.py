"""Exponential backoff: how long to wait after a number of failures in a row.

One rule for every retry loop of the package (the scheduler backing off a source, the node's
hub membership retrying its hub): ``initial`` seconds after the first failure, doubling with
each further one, never more than ``maximum``. Pure: the caller adds any jitter and does the
waiting.
"""

from __future__ import annotations


def exponential_backoff(failures: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (values below 1 count as 1)."""
    return min(maximum, initial * 2.0 ** (max(failures, 1) - 1))
