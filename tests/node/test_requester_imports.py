"""The requester of ``swarmget get --hub`` (``node.requester``) imports what a requester
needs and none of what only a serving node needs (issue #14: every module is start-up time
of that command): no aiohttp server, no Prometheus client (its download manager counts with
``node.tally``, rendered only by the node's collector), no database layer, no templates."""

from __future__ import annotations

import json
import subprocess
import sys

SERVING_ONLY = ("aiohttp.web", "prometheus_client", "sqlalchemy", "jinja2", "swarmget.web")
SERVING_ONLY += ("swarmget.node.metrics", "swarmget.net.metrics", "swarmget.node.daemon")


def test_the_requester_imports_nothing_only_a_serving_node_needs() -> None:
    code = "import json, sys, swarmget.node.requester; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stdout)
    assert "swarmget.node.downloads" in modules  # (it did import the requester's machinery)
    served = [m for m in modules if any(m == s or m.startswith(s + ".") for s in SERVING_ONLY)]
    assert served == []
