"""A node's side of replica watching: another replica says when ours is gone.

A node with several hubs (replicas of one registry: ``HubPool``) heartbeats one of them; by
itself it would notice that replica's death only at its next heartbeat plus the
heartbeat's timeout. ``watch_replicas`` keeps one request open on another replica, which
answers as soon as ours is gone (``swarmget.hub.replicas`` explains how a replica knows).
The pool makes the replica that told us its current hub at once (a heartbeat due meanwhile
goes there, not to the gone one, where a hung replica would hold it for the heartbeat's
timeout); then, after a random delay of up to ``MOVE_SPREAD`` (every node of that replica
hears at once), ``on_gone`` wakes the membership loop, whose next heartbeat (at once) goes
there, unless one went there already.

Whom to ask: the hub after ours in the pool's list, then the next ones, skipping ours.
A watch answered ``alive`` (the hub's hold time is over) is asked again at once (after
``MIN_GAP`` when it came back sooner: a hub that answers at once must not make us spin);
``unknown`` (a hub older than replica watching, a replica of another registry) or a
refusal (an older hub's 404) moves on to the next hub, and once every other hub said so we
look again after ``GIVE_UP_WAIT``; an unavailable hub moves on after a backoff. While we
are not registered, have one hub, or our hub names no replica, there is nothing to watch
(looked at again after the pool's next answer). Nothing here can stop the node: every
failure is logged and waited out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from swarmget.core.backoff import exponential_backoff
from swarmget.core.errors import HubError, HubUnavailable
from swarmget.core.replicas import ReplicaState
from swarmget.net.hub_client import HubPool

__all__ = ["GIVE_UP_WAIT", "MIN_GAP", "MOVE_SPREAD", "watch_replicas"]

log = logging.getLogger(__name__)

#: Seconds over which the nodes of a gone replica spread their moves (a random delay each):
#: they all hear in the same instant, and each move is a heartbeat signed with the node key
#: (which agrees the new session too since 2026-12-07) at the replica that told them. 490
#: nodes moving at once made that replica's heartbeat p99 0.18-0.38 s, 0.07-0.08 s spread
#: over 0.5 s (bench/README "Replicas that watch each other"); 1 s spread pushed the last
#: moves past 5 s (a heartbeat due during a node's turn then still went to the hung
#: replica; it goes to the teller since the 18th session). A spread named by the teller
#: from how many watch (up to 2 s) was measured at 3,000 nodes and not adopted.
MOVE_SPREAD = 0.5
#: The least seconds between two watches of one replica.
MIN_GAP = 1.0
#: Seconds before asking again once no other hub could watch ours.
GIVE_UP_WAIT = 300.0
#: Backoff after an unavailable hub: from this, doubling...
BACKOFF_INITIAL = 1.0
#: ... up to this.
BACKOFF_MAX = 30.0


async def watch_replicas(
    pool: HubPool,
    on_gone: Callable[[], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    spread: float = MOVE_SPREAD,
    rng: random.Random | None = None,
) -> None:
    """Watch the replica we heartbeat from another one until cancelled (see module doc);
    ``on_gone()`` a random 0-``spread`` seconds (``rng.uniform``) after the pool moved away
    from a gone replica, unless a heartbeat went to the teller meanwhile."""
    rng = rng or random.Random()
    failures, turn, refused = 0, 0, 0
    while True:
        plan = pool.watched()
        if plan is None:
            await pool.watched_change(None)
            continue
        index, replica = plan
        others = [i for i in range(len(pool.clients)) if i != index]
        asker = others[turn % len(others)]
        asked = clock()
        try:
            news = await pool.clients[asker].watch(replica)
        except HubUnavailable as exc:
            failures += 1
            turn += 1
            wait = exponential_backoff(failures, initial=BACKOFF_INITIAL, maximum=BACKOFF_MAX)
            log.info("hub %s cannot watch ours: %s", pool.clients[asker].hub_url, exc)
            await asyncio.sleep(wait * (0.5 + rng.random() / 2))
            continue
        except HubError as exc:  # refused: an older hub without the route, say
            log.info("hub %s refused to watch ours: %s", pool.clients[asker].hub_url, exc)
            refused, turn = refused + 1, turn + 1
            await _after_refusal(pool, plan, refused, len(others))
            continue
        except Exception:  # a bug here must not stop the node: it goes on without watching
            log.exception("watching hub %s failed", pool.clients[asker].hub_url)
            failures, turn = failures + 1, turn + 1
            await asyncio.sleep(BACKOFF_MAX)
            continue
        failures = 0
        if news.state is ReplicaState.GONE:
            refused = 0
            # the teller is our hub at once (a heartbeat due during the delay goes there,
            # not to the gone replica, where a hung one would hold it for its timeout);
            # only the wake that makes the move now waits its turn in the spread
            if pool.replica_gone(index, replica, told_by=asker):
                await asyncio.sleep(rng.uniform(0.0, spread))
                if pool.watched() == plan:  # (no heartbeat went to the teller meanwhile)
                    on_gone()
            await pool.watched_change(plan)
        elif news.state is ReplicaState.UNKNOWN:
            refused, turn = refused + 1, turn + 1
            await _after_refusal(pool, plan, refused, len(others))
        else:
            refused = 0
            await asyncio.sleep(max(0.0, MIN_GAP - (clock() - asked)))


async def _after_refusal(pool: HubPool, plan: tuple[int, str], refused: int, others: int) -> None:
    """Once every other hub refused or did not know ours: wait ``GIVE_UP_WAIT`` (or until
    we heartbeat another hub)."""
    if refused % others == 0:
        try:
            async with asyncio.timeout(GIVE_UP_WAIT):
                await pool.watched_change(plan)
        except TimeoutError:
            pass
