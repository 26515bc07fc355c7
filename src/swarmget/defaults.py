"""Defaults shared by the commands and the services, importable without importing them.

(The CLI needs these at import time for its option defaults; importing the hub or the node
daemon for them would cost half a second of start-up on every ``swarmget get``.)
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HUB_PORT = 7400
DEFAULT_PEER_PORT = 7401
DEFAULT_API_PORT = 7402
DEFAULT_PORTAL_PORT = 7403  # the portal's own listener, when it has one (web.remote)
DEFAULT_DB_URL = "sqlite+aiosqlite:///swarmget-hub.db"
#: Seconds a node stays listed by the hub without a heartbeat.
DEFAULT_TTL = 15.0
#: Peers one hub answer lists (``[hub] peers_limit``; at most 64, the protocol's bound).
DEFAULT_PEERS_LIMIT = 32
#: ``swarmget node --cache-budget``'s default (fetch once per LAN, #15): 4 GiB of finished
#: downloads kept for LAN peers. Enough for a few large files (installer images, datasets),
#: small next to today's disks; most kept files are the user's own downloads anyway, only
#: withdrawn (never deleted) when evicted. 0 disables sharing.
DEFAULT_CACHE_BUDGET = 4 * 1024**3
#: The environment variable holding the swarm secret (a file is preferred).
SECRET_ENV = "SWARMGET_SECRET"
DEFAULT_STATE_DIR = Path(
    os.environ.get("SWARMGET_STATE_DIR")
    or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "swarmget"
)
