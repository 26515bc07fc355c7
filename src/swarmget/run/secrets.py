"""The swarm's shared secret, as every command takes it: ``--secret-file`` or the
environment (``SWARMGET_SECRET``)."""

from __future__ import annotations

import os

from swarmget.defaults import SECRET_ENV


def swarm_secret(secret_file: str | None) -> bytes:
    """The secret from ``secret_file``, else from ``$SWARMGET_SECRET``; raises
    ``InvalidSecret`` saying what is wrong with it (see ``net.signing.load_secret``)."""
    from swarmget.net.signing import load_secret  # only when a command needs the secret

    return load_secret(secret_file, env_value=os.environ.get(SECRET_ENV))
