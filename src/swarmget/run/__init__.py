"""The wiring: the parts put together into the programs people run.

``run`` sits above ``web`` and below ``cli`` (``core <- ... <- {node, hub, relay} <- web <-
run <- cli``): ``run.node`` opens a node with its portal and runs it until a signal;
``run.local`` and ``run.remote`` are the CLI's ways to download (in this process, or handed
to the running node). Nothing below imports it.
"""
