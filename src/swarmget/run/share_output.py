"""``swarmget get --share-output`` (fetch once per LAN, #15, docs/fetch-once.md §7): after
this process saved a file outside the node's directories (the node only writes into its
own), ask the node running in ``--state-dir`` to serve it to its LAN group as the content
the download's probe pinned. The node keeps it only if it allows files saved elsewhere
(``swarmget node --share-output``); without the flag nothing is ever asked."""

from __future__ import annotations

import enum
from pathlib import Path

from swarmget.core.errors import SwarmgetError
from swarmget.engine.spec import DownloadResult

__all__ = ["OutputShared", "share_output"]


class OutputShared(enum.Enum):
    """What became of ``--share-output``."""

    SHARED = "shared"  # the node serves it and announced it to its group
    NO_NODE = "no_node"  # no node runs in the state directory, or it did not answer
    NODE_REFUSES = "node_refuses"  # the node does not share files saved elsewhere
    NOT_KEPT = "not_kept"  # sharing off there, the file not fit (owner, budget)
    NOT_SHAREABLE = "not_shareable"  # no size, or no strong validator and no sha256

    def warning(self) -> str | None:
        """What to tell the user when the file is not shared (None: it is)."""
        return _WARNINGS.get(self)


_WARNINGS = {
    OutputShared.NO_NODE: "not shared: no node answers in the state directory",
    OutputShared.NODE_REFUSES: "not shared: the node does not share files saved outside its "
    "directories (swarmget node --share-output)",
    OutputShared.NOT_KEPT: "not shared: the node did not keep it (sharing off, the file not "
    "its user's regular file, or over its --cache-budget)",
    OutputShared.NOT_SHAREABLE: "not shared: the origin gave no size and strong validator "
    "(ETag or Last-Modified) and no sha256 is known (--checksum sha256:...)",
}


async def share_output(state_dir: Path, result: DownloadResult) -> OutputShared:
    """Ask the node in ``state_dir`` to share ``result``'s file (see the module doc)."""
    key = result.content
    if key is None or not key.shareable:
        return OutputShared.NOT_SHAREABLE
    from swarmget.protocol.content import ContentKeyModel
    from swarmget.protocol.user import SHARED_OUTPUTS_PATH, SharedOutput, ShareOutput, ShareRefusal
    from swarmget.run import remote

    body = ShareOutput(path=str(result.path.absolute()), key=ContentKeyModel.of(key))
    try:
        async with remote.open_local_node(state_dir) as api:
            if api is None:
                return OutputShared.NO_NODE
            status, data = await api.call("POST", SHARED_OUTPUTS_PATH, body.model_dump(mode="json"))
    except SwarmgetError:
        return OutputShared.NO_NODE
    if status != 200:
        return OutputShared.NO_NODE
    answer = SharedOutput.model_validate(data)
    if answer.kept:
        return OutputShared.SHARED
    if answer.refusal is ShareRefusal.NODE_REFUSES:
        return OutputShared.NODE_REFUSES
    return OutputShared.NOT_KEPT
