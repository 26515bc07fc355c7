"""swarmget: download one large file faster by splitting it across the machines of a LAN."""

__version__ = "0.1.0"
