"""`python -m node`: the same entry point as `wallarm-node`."""

import sys

from node.cli import main

sys.exit(main())
