"""The wiring: the parts put together into the programs people run.

``run`` sits above ``web`` and below ``cli`` (``core <- ... <- {node, hub, relay} <- web <-
run <- cli``): ``run.node`` opens a node with its portal and runs it until a signal;
``run.get`` decides which way ``swarmget get`` downloads and goes that way, with
``run.local`` and ``run.remote`` (in this process, or handed to the running node);
``run.secrets`` reads the swarm secret as every command takes it. Nothing below imports it.
"""
