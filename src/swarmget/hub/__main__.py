"""``python -m swarmget.hub``: run a hub (see ``swarmget.hub.service``)."""

import sys

from swarmget.hub.service import main

sys.exit(main())
