"""``python -m swarmget.testing.origin --file big=300M``: see ``command``."""

import sys

from swarmget.testing.origin.command import main

sys.exit(main())
