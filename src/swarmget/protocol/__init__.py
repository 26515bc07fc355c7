"""Every wire message of swarmget, defined once for the side that sends it and the side
that receives it (pydantic models, validated where they arrive), and the one table of
error codes that cross the wire.

    peer.py    the peer API: a helper's ``POST /v1/range`` and ``GET /v1/health``
    hub.py     the hub API: register, heartbeat, the peer list
    relay.py   the relay API: ``POST /v1/fetch`` and the fetch it answers
    user.py    the node's user API: ``POST /v1/downloads``
    errors.py  code ↔ HTTP status ↔ exception, per API, and the error tree's codes

This package imports only ``swarmget.core`` and pydantic: ``core ← protocol ← {storage,
net} ← node, hub, relay ← web ← cli``.
"""
