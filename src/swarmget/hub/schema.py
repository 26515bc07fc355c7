"""The hub's tables (``swarmget.hub.store`` reads and writes them).

``hub_nodes``: one row per registered node, indexed by (group, last_seen) for one group's
live nodes and by (address, last_seen) for the per-address cap. ``hub_nonces``: the seen
request nonces, keyed by (node id, nonce), until they expire. ``hub_replicas``: one row per
running hub process with a counter it raises while it runs (``swarmget.hub.replicas``).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["create_missing_indexes", "metadata", "nodes", "nonces", "replicas"]

metadata = sa.MetaData()

nodes = sa.Table(
    "hub_nodes",
    metadata,
    sa.Column("node_id", sa.String(128), primary_key=True),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("url", sa.String(300), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False),
    sa.Column("wan_rate", sa.BigInteger, nullable=True),
    sa.Column("quota_left", sa.BigInteger, nullable=True),
    sa.Column("registered_at", sa.Double, nullable=False),
    sa.Column("last_seen", sa.Double, nullable=False, index=True),
    sa.Column("stats", sa.JSON, nullable=False),
    sa.Index("ix_hub_nodes_group_seen", "group_name", "last_seen"),
    sa.Index("ix_hub_nodes_address_seen", "address", "last_seen"),
)


nonces = sa.Table(
    "hub_nonces",
    metadata,
    sa.Column("node_id", sa.String(128), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
)


replicas = sa.Table(
    "hub_replicas",
    metadata,
    sa.Column("replica_id", sa.String(32), primary_key=True),
    sa.Column("beats", sa.BigInteger, nullable=False),
)


def create_missing_indexes(conn: sa.Connection) -> None:
    """The indexes of a database made before they were declared (``create_all`` makes a
    new table's indexes, but adds none to an existing table)."""
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)
